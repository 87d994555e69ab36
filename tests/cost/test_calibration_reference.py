"""A stored calibration keeps the reference-workload timing it was taken with, and the cost model checks it
when it uses the calibration: a mismatch is rescaled and reported in the prediction's basis and source."""

from __future__ import annotations

import dataclasses

import pytest

from chipfit import create_target
from chipfit.cost.calibration import SCHEME, Calibration, record_reference
from chipfit.cost.model import CostModel
from chipfit.graph import Node, OpClass, OpGraph, TensorInfo

GRAPH = OpGraph(name="tiny", nodes=(Node("fc", OpClass.DENSE, "Gemm", ("x",), ("y",), macs=4000, params=4010,
                                         weights=4000),),
                tensors={"x": TensorInfo((1, 100)), "y": TensorInfo((1, 40))}, inputs=("x",), outputs=("y",))
KEY = "ref-int8conv-v1 | onnxruntime test (1 thread) | host: test"
CAL = Calibration(target="host", runtime="onnxruntime", dtype="int8", device="host: test", scheme=SCHEME,
                  coefficients={"const": 0.01, "nodes_dense": 0.002, "pmacs_dense": 1e-6}, measurements=3,
                  estimator="min", reference_ms=0.1, reference_id=KEY, reference_baseline_ms=0.09, busy=False)


def test_a_stored_calibration_carries_its_reference_timing(tmp_path):
    p = CAL.save(tmp_path / "cal.json")
    back = Calibration.load(p)
    assert back == CAL and back.reference_ms == 0.1 and back.reference_id == KEY and back.busy is False
    old = {k: v for k, v in CAL.to_dict().items() if not k.startswith(("reference", "busy"))}
    assert Calibration.from_dict(old).reference_ms is None  # a calibration from before: still readable


def test_a_slower_machine_now_rescales_the_prediction_and_says_so():
    host = create_target("host")
    base = CostModel(calibrations=[CAL], auto_calibration=False, reference_ms=0.1).estimate(GRAPH, host)
    assert base.latency_ms == pytest.approx(CAL.predict_ms(GRAPH))
    assert "not rescaled" in base.efficiency_source and base.basis.endswith("(calibrated)")
    slow = CostModel(calibrations=[CAL], auto_calibration=False, reference_ms=0.13).estimate(GRAPH, host)
    assert slow.latency_ms == pytest.approx(1.3 * base.latency_ms)
    assert "100 us at calibration, 130 us now: predictions rescaled x1.300" in slow.efficiency_source
    assert "rescaled x1.300" in slow.basis
    assert sum(layer.latency_ms for layer in slow.layers) == pytest.approx(1.3 * sum(CAL.node_ms(GRAPH)))


def test_the_quiet_baseline_in_the_cache_checks_a_busy_calibration(tmp_path, monkeypatch):
    monkeypatch.setenv("CHIPFIT_CACHE_DIR", str(tmp_path))
    busy = dataclasses.replace(CAL, reference_ms=0.15, busy=True, busy_reason="planted")
    host = create_target("host")
    unchecked = CostModel(calibrations=[busy], auto_calibration=False).estimate(GRAPH, host)
    assert "not checked" in unchecked.efficiency_source  # no baseline for this machine yet
    assert "busy" in unchecked.efficiency_source
    record_reference(KEY, 0.1)
    checked = CostModel(calibrations=[busy], auto_calibration=False).estimate(GRAPH, host)
    assert checked.latency_ms == pytest.approx(unchecked.latency_ms * 0.1 / 0.15)
    assert "quiet baseline" in checked.efficiency_source and "rescaled" in checked.basis


def test_reference_scale_tolerates_small_differences_and_missing_timings():
    assert CAL.reference_scale(0.104)[0] == 1.0 and "not rescaled" in CAL.reference_scale(0.104)[1]
    assert CAL.reference_scale(None)[0] == 1.0 and "not checked" in CAL.reference_scale(None)[1]
    no_ref = dataclasses.replace(CAL, reference_ms=None)
    assert no_ref.reference_scale(0.2)[0] == 1.0
