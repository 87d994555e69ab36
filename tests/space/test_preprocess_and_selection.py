"""Front-ends and preprocessing (shapes agree with the cost model), and best-candidate selection."""

from __future__ import annotations

import numpy as np
import pytest

from chipfit import create_run
from chipfit.contract.schema import InputSpec
from chipfit.runtime.frontend import MfccFrontEnd, SpectralFrontEnd
from chipfit.runtime.preprocess import Preprocessor, mfcc, resize_bilinear, spectral
from chipfit.space import ArchConfig, create_space
from chipfit.store import CandidateRecord


@pytest.mark.parametrize(("sr", "dur", "fe"), [(16000, 1.0, MfccFrontEnd(40, 20, 40, 10)),
                                               (8000, 1.0, MfccFrontEnd(30, 32, 40, 13)),
                                               (16000, 0.5, MfccFrontEnd(40, 40, 40, 0))])
def test_mfcc_shape_matches_cost_model(sr, dur, fe):
    x = np.random.default_rng(0).normal(size=(2, int(sr * dur))).astype(np.float32)
    assert mfcc(x, sr, fe).shape[1:] == fe.output_shape(sr, dur)
    assert fe.ops(sr, dur) > 0 and fe.buffer_bytes(sr, dur) >= int(sr * dur) * 2


def test_mfcc_separates_tones():
    t = np.arange(16000) / 16000
    low, high = np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 3000 * t)
    f = mfcc(np.stack([low, high]).astype(np.float32), 16000, MfccFrontEnd(40, 20, 40, 0))
    assert f[0].mean(0).argmax() < f[1].mean(0).argmax()  # the low tone peaks in a lower mel band


def test_spectral_front_end_finds_frequency():
    t = np.arange(1024) / 1024
    x = np.stack([np.sin(2 * np.pi * 50 * t), np.sin(2 * np.pi * 400 * t)])[..., None].astype(np.float32)
    s = spectral(x, SpectralFrontEnd(32))
    assert s.shape == (2, 32, 1) and s[0, :, 0].argmax() < s[1, :, 0].argmax()


def test_resize_bilinear_keeps_constant_images():
    x = np.full((1, 9, 7, 3), 0.25, np.float32)
    assert np.allclose(resize_bilinear(x, 4, 5), 0.25)


@pytest.mark.parametrize("spec", [InputSpec(modality="image", shape=[12, 12, 3]),
                                  InputSpec(modality="audio", sample_rate_hz=8000, duration_s=0.5),
                                  InputSpec(modality="series", shape=[256, 3])])
def test_preprocessor_output_matches_network_input(spec):
    space = create_space(spec, 3)
    rng = np.random.default_rng(0)
    raw = {"image": (6, 12, 12, 3), "audio": (6, 4000), "series": (6, 256, 3)}[spec.modality]
    x = rng.random(raw, dtype=np.float32)
    for cfg in space.smallest():
        shape = space.model_input_shape(cfg)
        pre = Preprocessor.fit(x, spec.modality, shape, sample_rate_hz=spec.sample_rate_hz,
                               frontend=space.frontend(cfg))
        out = pre(x)
        assert out.shape == (6, *shape[1:]) and out.dtype == np.float32
        assert Preprocessor.from_dict(pre.to_dict()) == pre
        assert space.build(cfg)(__import__("torch").from_numpy(out)).shape == (6, 3)


def test_frontend_counts_against_ram():
    space = create_space(InputSpec(modality="audio", sample_rate_hz=16000, duration_s=1.0), 12)
    cfg = ArchConfig("dscnn", {"frame_ms": 40, "hop_ms": 20, "n_mfcc": 10, "width": 16, "blocks": 1, "kernel": 3,
                               "stem_kernel": "3x3", "stem_stride": 2, "downsample": 0})
    cand = space.candidate(cfg)
    assert cand.frontend_ram_bytes >= 32000  # one second of int16 audio is buffered
    from chipfit import create_target
    from chipfit.cost import CostModel

    cost = CostModel().estimate(cand.graph, create_target("nrf52840"), frontend_ops=cand.frontend_ops,
                                frontend_ram_bytes=cand.frontend_ram_bytes)
    assert cost.ram_bytes >= cost.arena_bytes + cand.frontend_ram_bytes
    assert cost.layers[0].op == "dsp" and cost.layers[0].latency_ms > 0


def _rec(i, acc, lat, state="COMPLETE", margins=None, cons=None):
    return CandidateRecord(id=i, key=f"k{i}", config={"family": "cnn"}, state=state, reason="", predicted={
        "latency_ms": lat}, constraints=cons or {"latency_ms": -0.1}, margins=margins or {"latency_ms": 0.1},
        accuracy_int8=acc if state == "COMPLETE" else None, train_seconds=1.0 if state != "INFEASIBLE" else 0.0)


def test_selection_and_pareto(tmp_path):
    run = create_run("examples/digits.yaml", out=tmp_path / "r")
    for r in [_rec(0, 0.90, 3.0), _rec(1, 0.95, 4.0, margins={"latency_ms": 0.2}), _rec(2, 0.95, 2.0,
              margins={"latency_ms": 0.6}), _rec(3, 0.80, 1.0), _rec(4, None, 9.0, "INFEASIBLE",
                                                                      cons={"latency_ms": 0.8})]:
        run.store.append(r)
    assert run.best.id == 2  # tie on accuracy goes to the larger margins
    assert [r.id for r in run.pareto] == [3, 2]


def test_selection_when_nothing_was_trained(tmp_path):
    run = create_run("examples/digits.yaml", out=tmp_path / "r")
    run.store.append(_rec(0, None, 9.0, "INFEASIBLE", cons={"latency_ms": 0.8, "ram_kb": -0.5}))
    run.store.append(_rec(1, None, 6.0, "INFEASIBLE", cons={"latency_ms": 0.2, "ram_kb": -0.5}))
    sel = run.select()
    assert sel.best is None and sel.binding == ["latency_ms"] and sel.closest.id == 1
