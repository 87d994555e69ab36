"""The ordinary-CNN generator: what it draws covers ordinary CNNs (not chipfit's spaces), and what it builds is a
valid int8 ONNX file quantized by ``quantize_static`` directly (QDQ and QOperator) that the cost model prices."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from chipfit import create_target
from chipfit.cost.calibration import fit_calibration, node_features
from chipfit.cost.model import CostModel
from chipfit.graph import from_onnx
from chipfit.measure.ordinary import (
    MAX_MACS,
    OrdinaryConfig,
    _macs,
    build_ordinary,
    export_fixed,
    make_ordinary,
    ordinary_configs,
    quantize_user_style,
)

QUANT_STYLES = [
    {"format": "QDQ", "per_channel": True, "activation": "QInt8", "preprocess": True},
    {"format": "QDQ", "per_channel": False, "activation": "QUInt8", "preprocess": False},
    {"format": "QOperator", "per_channel": True, "activation": "QUInt8", "preprocess": False},
    {"format": "QOperator", "per_channel": False, "activation": "QInt8", "preprocess": True},
]


def test_draws_cover_ordinary_cnns_and_differ_by_seed():
    cfgs = ordinary_configs(80, seed=4000)
    blocks = [b for c in cfgs for b in c.blocks]
    assert {1, 2} == {c.dims for c in cfgs}
    assert {1, 3, 5, 7} <= {b.k for b in blocks}
    assert {1, 2} == {b.stride for b in blocks if b.kind not in ("maxpool", "avgpool")}
    assert {"conv", "sep", "group", "res", "maxpool", "avgpool"} <= {b.kind for b in blocks}
    assert any(b.out % 8 for b in blocks) and any(c.size == 128 for c in cfgs if c.dims == 2)
    assert {"QDQ", "QOperator"} == {c.quant["format"] for c in cfgs}
    assert all(_macs(c) <= MAX_MACS for c in cfgs)
    assert len({c.key for c in cfgs}) == 80
    assert {c.key for c in ordinary_configs(20, seed=4001)}.isdisjoint({c.key for c in cfgs[:20]})
    assert ordinary_configs(5, seed=4000) == cfgs[:5]  # the seed fixes the draw


@pytest.fixture(scope="module")
def small_config() -> OrdinaryConfig:
    """A small network with every block kind (residual with projection, grouped, separable, both pools)."""
    for cfg in ordinary_configs(400, seed=11):
        kinds = {b.kind for b in cfg.blocks}
        if cfg.dims == 2 and {"res", "sep"} <= kinds and _macs(cfg) < 3_000_000:
            return cfg
    pytest.skip("no small config with residual and separable blocks in the draw")


@pytest.mark.parametrize("quant", QUANT_STYLES, ids=lambda q: f"{q['format']}-{q['activation']}")
def test_quantize_static_files_are_valid_and_priced(tmp_path, small_config, quant):
    cfg = dataclasses.replace(small_config, quant=quant)
    fp = export_fixed(build_ordinary(cfg), cfg.input_shape, tmp_path / "m.onnx")
    q = quantize_user_style(fp, tmp_path / "m.int8.onnx", cfg.input_shape, quant)
    model = onnx.load(str(q))
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    if quant["format"] == "QOperator":
        assert "QLinearConv" in ops and "Conv" not in ops
    else:
        assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    sess = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": np.zeros(cfg.input_shape, np.float32)})[0]
    assert out.shape == (1, cfg.classes)
    g_fp, g_q = from_onnx(fp), from_onnx(q)
    assert (g_q.macs, g_q.params) == (g_fp.macs, g_fp.params) and g_q.macs > 0
    assert [n.op.value for n in g_q.nodes] == [n.op.value for n in g_fp.nodes]
    act = "uint8" if quant["activation"] == "QUInt8" else "int8"
    assert {n.attrs.get("act_dtype") for n in g_q.nodes if n.op.counts_macs} == {act}
    cost = CostModel(auto_calibration=False).estimate(g_q, create_target("host"))
    assert cost.latency_ms > 0 and not cost.unsupported
    assert all(f for n, f in zip(g_q.nodes, node_features(g_q), strict=True) if not n.op.is_alias)


def test_make_ordinary_builds_files_a_calibration_prices(tmp_path):
    nets = make_ordinary(6, tmp_path, seed=4000)
    assert len(nets) == 6 and all(n.path.is_file() and n.path.suffix == ".onnx" for n in nets)
    assert all(n.graph.macs > 0 for n in nets)
    y = [0.02 + 2e-8 * n.graph.macs for n in nets]
    cal = fit_calibration([n.graph for n in nets], y, target="host", runtime="onnxruntime", dtype="int8",
                          device="d", estimator="exact")
    cm = CostModel(calibrations=[cal], auto_calibration=False)
    for n in nets:
        c = cm.estimate(from_onnx(n.path), create_target("host"))
        assert np.isfinite(c.latency_ms) and c.latency_ms > 0 and c.predicted_by == "calibrated"


def test_a_nets_file_is_the_same_whatever_builds_it(tmp_path):
    """Weights are drawn in the caller, in order; export and quantize_static run in worker processes (one per
    CPU), their sessions on one thread: the files are byte for byte those built here, one after another."""
    from chipfit.measure.buildpool import MIN_PER_JOB, effective_jobs

    n = 2 * MIN_PER_JOB
    assert effective_jobs(n, 2) == 2
    here = make_ordinary(n, tmp_path / "here", seed=21, jobs=1)
    pooled = make_ordinary(n, tmp_path / "pooled", seed=21, jobs=2)
    assert [p.path.name for p in here] == [p.path.name for p in pooled]
    assert all(a.path.read_bytes() == b.path.read_bytes() for a, b in zip(here, pooled, strict=True))
    assert [a.graph.macs for a in here] == [b.graph.macs for b in pooled]
