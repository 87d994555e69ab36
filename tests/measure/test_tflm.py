"""TFLM as a runtime: chipfit's arena prediction against TFLM's own allocator (MLPerf Tiny, random models shaped
like the search spaces, real exports), the unsupported-op error, evaluation through TFLM, the C header's arena."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from chipfit.cost.arena import tflm_arena, tflm_ram
from chipfit.errors import MeasurementError
from chipfit.graph import from_tflite
from chipfit.measure.tflm import available

pytestmark = pytest.mark.skipif(available() is not None, reason=f"{available()}")

MLPERF = {"ic": "ic/pretrainedResnet_quant.tflite", "kws": "kws/kws_ref_model.tflite",
          "vww": "vww/vww_96_int8.tflite", "ad": "ad/ad01_int8.tflite"}


def _check(data: bytes | Path, *, graph_path: Path | None = None) -> None:
    from chipfit.measure.tflm import measure_arena

    for kernels in ("reference", "cmsis-nn"):
        m = measure_arena(data, kernels=kernels)
        x86 = tflm_arena(data, abi="x86_64", recording=True)
        arm = tflm_arena(data, abi="arm32", kernels=kernels)
        assert x86.planned == m.planned  # byte for byte, TFLM's GreedyMemoryPlanner head
        assert arm.planned == m.planned_arm32
        # the tail model, checked on x86-64: exact on most models, 16 bytes short on some (vww; unexplained)
        assert -16 <= x86.persistent - m.persistent <= 0
        assert abs(arm.total / m.total_arm32 - 1) <= 0.02  # the ±2% of the issue, 32-bit
        if graph_path is not None:  # the cost model's path: an OpGraph read from the same file
            g = from_tflite(graph_path)
            sizes = {t: info.nbytes() for t, info in g.tensors.items()}
            p, tail, _ = tflm_ram(g, lambda t, s=sizes: s.get(t, 0), kernels=kernels)
            assert p.arena == m.planned_arm32
            assert abs((p.arena + tail) / m.total_arm32 - 1) <= 0.02


@pytest.mark.parametrize("name", sorted(MLPERF))
def test_mlperf_tiny_arena_matches_tflm(mlperf_models: Path, name: str) -> None:
    path = mlperf_models / MLPERF[name]
    _check(path, graph_path=path)


def test_kws_with_cmsis_nn_matches_the_emulated_cortex_m4(mlperf_models: Path) -> None:
    # arena_used_bytes() of TFLM + CMSIS-NN on an emulated Cortex-M4 (../shared/third_party/README.md): 22,820
    a = tflm_arena(mlperf_models / MLPERF["kws"], abi="arm32", kernels="cmsis-nn")
    assert a.total == 22_820


def test_random_models_shaped_like_the_search_spaces() -> None:
    from tflm_models import random_model

    for seed in range(60):
        _check(random_model(seed))


EXPORT_CHUNKS, EXPORTS_PER_CHUNK = 4, 6  # 24 real exports (bench/tflm.py runs more), in chunks xdist spreads
EXPORT_SPECS = [{"modality": "image", "shape": [16, 16, 3]}, {"modality": "audio", "shape": [25, 10]},
                {"modality": "series", "shape": [64, 3]}]


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(EXPORT_CHUNKS))
def test_random_search_space_exports(chunk: int, tmp_path: Path) -> None:
    """Property test on real exports: random configs of every search space, exported to int8 .tflite by
    litert-torch as a run exports them (about 3 s each), match TFLM's allocator (see ``_check``)."""
    pytest.importorskip("litert_torch", reason="litert-torch is not installed (pip install 'chipfit[tflite]')")
    from chipfit.contract.schema import InputSpec
    from chipfit.export.tflite_export import convert_int8_tflite
    from chipfit.space import ArchConfig, create_space

    for i in range(chunk * EXPORTS_PER_CHUNK, (chunk + 1) * EXPORTS_PER_CHUNK):
        space = create_space(InputSpec.model_validate(EXPORT_SPECS[i % 3]), 4)
        rng = random.Random(5000 + i)
        fam = rng.choice(list(space.families))
        cfg = ArchConfig(fam, {k: rng.choice(v) for k, v in space.families[fam].items()})
        shape = space.model_input_shape(cfg)
        calib = np.random.default_rng(i).standard_normal((2, *shape[1:])).astype(np.float32)
        p = convert_int8_tflite(space.build(cfg), shape, calib, tmp_path / f"{i}_{fam}.tflite")
        _check(p)  # the prediction from the file: plan byte for byte, 32-bit total within 2%
        # the cost model's path (an OpGraph read from the file): the same plan; the total within 2%, or 32 bytes on
        # the smallest models (the tail constant the x86 wheel has and the 32-bit conversion removes)
        from chipfit.measure.tflm import measure_arena

        g = from_tflite(p)
        sizes = {t: info.nbytes() for t, info in g.tensors.items()}
        for kernels in ("reference", "cmsis-nn"):
            m = measure_arena(p, kernels=kernels)
            plan, tail, _ = tflm_ram(g, lambda t, s=sizes: s.get(t, 0), kernels=kernels)
            assert plan.arena == m.planned_arm32, (i, fam, kernels)
            assert abs(plan.arena + tail - m.total_arm32) <= max(0.02 * m.total_arm32, 32), (i, fam, kernels)


def _unsupported_model() -> bytes:
    from tflm_models import _Builder, _schema

    s = _schema()
    b = _Builder()
    x = b.tensor((1, 8), s.TensorType.FLOAT32, [], [])
    y = b.tensor((1, 8), s.TensorType.FLOAT32, [], [])
    b.op(s.BuiltinOperator.RANK, [x], [y])
    return b.finish([x], [y])


def test_unsupported_op_is_a_clear_error(tmp_path: Path) -> None:
    from chipfit.measure.registry import create_runtime

    p = tmp_path / "rank.tflite"
    p.write_bytes(_unsupported_model())
    with pytest.raises(MeasurementError, match=r"RANK .*no kernel.*'litert'"):
        create_runtime("tflm").measure(p, rounds=1, runs=1, warmup=0)


def test_evaluate_tflite_agrees_with_litert(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    from tflm_models import random_model

    from chipfit.measure.tflm import evaluate_tflite

    p = tmp_path / "m.tflite"
    p.write_bytes(random_model(3))
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(p))
    shape = tuple(it.get_input_details()[0]["shape"])
    x = np.random.default_rng(0).uniform(-2, 2, size=(20, *shape[1:])).astype(np.float32)
    ev = evaluate_tflite(p, x)  # no labels: accuracy is NaN, agreement is against LiteRT
    assert ev.n == 20 and ev.agreement == 1.0 and ev.agreement_with.startswith("LiteRT")
    ev2 = evaluate_tflite(p, x, ev.predictions)
    assert ev2.accuracy == 1.0 and ev2.inferences_per_s > 0
    with pytest.raises(MeasurementError, match="expected samples of"):
        evaluate_tflite(p, np.zeros((3, 7), np.float32))


def test_c_header_states_tflm_arena(mlperf_models: Path, tmp_path: Path) -> None:
    from chipfit.export.c_array import tflm_arena_size, write_c_array

    path = mlperf_models / MLPERF["kws"]
    size, note = tflm_arena_size(path)
    assert size % 16 == 0 and 22_820 <= size <= 22_820 + 64  # TFLM+CMSIS-NN on a Cortex-M4 used 22,820
    h, _ = write_c_array(path.read_bytes(), tmp_path / "model_data.h", tmp_path / "model_data.c", arena_bytes=size,
                         arena_note=note)
    text = h.read_text()
    assert f"#define CHIPFIT_TENSOR_ARENA_SIZE {size}u" in text and "CMSIS-NN" in text


def test_tflm_runtimes_are_registered() -> None:
    from chipfit.measure.registry import list_runtimes

    assert {"tflm", "tflm-cmsis-nn"} <= set(list_runtimes())
