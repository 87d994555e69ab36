"""``calibrate(node_model="trees")``: ONNX Runtime's per-node profiles of the probes fit the trees, which then
price ``profile``; a runtime that cannot profile per node keeps the linear feature costs and says so."""

from __future__ import annotations

import logging

import pytest

from chipfit import create_target, profile
from chipfit.cost.calibration import Calibration
from chipfit.cost.model import CostModel
from chipfit.errors import UsageError
from chipfit.graph import load_graph
from chipfit.measure.calibrate import calibrate
from chipfit.measure.fake import FakeRuntime


def test_a_runtime_without_node_profiles_keeps_the_linear_costs(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="chipfit.measure.calibrate"):
        cal = calibrate("host", runtime=FakeRuntime(), probes=6, workdir=tmp_path, save=False, node_model="trees")
    assert cal.trees is None and "trees" not in cal.coefficients
    assert "per-node trees need per-node profile times" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="chipfit.measure.calibrate"):  # the default: trees where possible
        cal = calibrate("host", runtime=FakeRuntime(), probes=6, workdir=tmp_path / "d", save=False)
    assert cal.trees is None and "per-node trees" not in caplog.text
    with pytest.raises(UsageError, match="node_model"):
        calibrate("host", runtime=FakeRuntime(), probes=6, workdir=tmp_path / "e", save=False, node_model="forest")


def test_onnx_runtime_profiles_fit_the_trees_that_price_profile(tmp_path):
    cal = calibrate("host", probes=12, ordinary=0, rounds=1, runs=3, workdir=tmp_path / "probes", save=False,
                    allow_busy=True)  # the default: trees, as ONNX Runtime profiles per node
    assert cal.trees is not None and cal.extra["tree_samples"] >= 50
    back = Calibration.load(cal.save(tmp_path / "cal.json"))
    onnx_file = next((tmp_path / "probes").rglob("*.onnx"))
    cost = profile(onnx_file, target=create_target("host"),
                   cost_model=CostModel(calibrations=[back], auto_calibration=False, reference_ms=back.reference_ms)
                   ).cost
    assert cost.predicted_by == "calibrated" and cost.latency_ms > 0
    assert cost.latency_ms == pytest.approx(back.predict_ms(load_graph(onnx_file)))
    assert "gradient-boosted trees" in cost.efficiency_source
