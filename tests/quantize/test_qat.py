"""Quantization-aware fine-tuning: runs on a tiny model, leaves weights on the int8 grid, and the fine-tuned model
takes the same int8 ONNX export (valid, runs in ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from chipfit.contract.schema import InputSpec
from chipfit.quantize.int8 import export_onnx, onnx_accuracy, quantize_int8
from chipfit.quantize.qat import FakeQuantized, qat_finetune
from chipfit.space import create_space
from chipfit.space.config import ArchConfig


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean((1, 2)) > 0).astype(np.int64)
    return x, y


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    space = create_space(InputSpec(modality="image", shape=[8, 8, 1]), 2)
    return space.build(ArchConfig("cnn", {"resolution": 1.0, "width": 4, "blocks": 1, "kernel": 3, "stride": 2}))


def test_fake_quantization_is_removed_and_weights_stay_on_the_grid() -> None:
    m = _model()
    keys = list(m.state_dict())
    with FakeQuantized(m) as fq:
        assert len(fq.fq) > 2 and any("parametrizations" in k for k in m.state_dict())
        m(torch.randn(4, 1, 8, 8))
    assert sorted(m.state_dict()) == sorted(keys)  # same architecture, same state keys
    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d | torch.nn.Linear):
            w = mod.weight.detach()
            s = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127
            assert float((w / s - (w / s).round()).abs().max()) < 1e-3


def test_qat_runs_and_its_model_exports_to_a_valid_int8_onnx(tmp_path: Path) -> None:
    x, y = _data()
    m = _model()
    tuned, res = qat_finetune(m, x[:120], y[:120], x[120:], y[120:], epochs=2, lr=1e-3, batch_size=32)
    assert res.epochs == 2 and res.val_after >= res.val_before and res.seconds > 0
    assert not torch.equal(next(iter(tuned.parameters())), next(iter(m.parameters())))  # a copy was tuned
    fp = export_onnx(tuned, (1, 1, 8, 8), tmp_path / "m.onnx")
    q = quantize_int8(fp, tmp_path / "m.int8.onnx", x[:64])
    onnx.checker.check_model(str(q))
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(q)).graph.node)
    assert 0 <= onnx_accuracy(q, x[120:], y[120:]) <= 1


def test_candidate_trainer_fine_tunes_when_int8_drops(tmp_path: Path) -> None:
    from chipfit import load_contract
    from chipfit.data.sources import load_dataset
    from chipfit.search.training import CandidateTrainer

    c = load_contract("examples/digits.yaml").with_updates(
        {"field": [], "search": {"epochs": 1, "threads": 1, "recipe": {"distill": False, "qat_epochs": 1}}})
    ct = CandidateTrainer(c, load_dataset(c), c.get_target(), tmp_path)
    cfg = ArchConfig("cnn", {"resolution": 0.5, "width": 4, "blocks": 1, "kernel": 3, "stride": 2})
    prep = ct.prepared(cfg)
    m = ct.space.build(cfg)
    out = tmp_path / "c"
    out.mkdir()
    shape = ct.space.model_input_shape(cfg)
    export_onnx(m, shape, out / "model.onnx")
    # stated figures: a 50-point drop calls for QAT whatever the model measures
    note, _, acc_q = ct.maybe_qat(m, prep, shape, out, prep.x_train[:64], 1.0, 0.5, seed=0)
    assert note is not None and note["fine_tuned"] and note["accuracy_int8_before"] == 0.5
    assert {"accuracy_float_after", "accuracy_int8_after", "kept", "seconds", "epochs"} <= set(note)
    assert acc_q == (note["accuracy_int8_after"] if note["kept"] else 0.5)
    assert (out / "model.int8.onnx").is_file() == note["kept"] and not (out / "model.qat.onnx").exists()
    none, *_ = ct.maybe_qat(m, prep, shape, out, prep.x_train[:64], 0.9, 0.895, seed=0)  # within a point
    assert none is None
