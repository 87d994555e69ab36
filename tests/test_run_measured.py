"""A run on the ``host`` target calibrates its cost model before searching and measures its finalists:
the report shows predicted beside measured, and judges the latency budget on the measurement too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import chipfit
from chipfit.cost.calibration import Calibration

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def host_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostrun")
    doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    doc.update(name="digits-host", target="host", runtime="onnxruntime", duty_cycle=None, field=[])
    doc["budgets"] = {"latency_ms": {"max": 5}, "accuracy": 0.5}
    doc["search"].update(trials=4, epochs=2, rung_epochs=1, time_budget_s=120)
    doc["measure"] = {"calibration_probes": 6, "finalists": 2}
    path = folder / "host.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in doc.items() if v is not None}))
    run = chipfit.create_run(path, out=folder / "run")
    run.search()
    report = run.finalize()
    return run, report


def test_run_calibrates_once_before_searching(host_run):
    run, _ = host_run
    cal = Calibration.load(run.dir / "calibration.json")
    assert cal.target == "host" and cal.measurements == 6 and "onnxruntime" in cal.runtime_version
    feasible = [r for r in run.candidates if r.state != "INFEASIBLE"]
    assert feasible
    g = run.best_cost()
    assert g.efficiency_source == cal.describe()
    assert run.calibrate() == cal  # loaded, not measured again


def test_report_shows_predicted_beside_measured(host_run):
    run, report = host_run
    rows = report["measured"]
    assert rows and rows[0]["role"] == "best"
    for row in rows:
        assert row["measured_latency_ms"] > 0 and row["predicted_latency_ms"] > 0
        assert row["label"].startswith("measured (min of 100 runs")
        assert "onnxruntime" in row["label"] and "host:" in row["label"]
        assert row["measured"]["peak_memory_bytes"] is not None
    budgets = {b["name"]: b for b in report["budgets"]}
    assert budgets["latency_ms"]["source"].startswith("predicted (cost model, calibrated by measurements: onnxruntime "
                                                      "on host")
    assert budgets["latency_ms"]["predicted_by"].startswith("calibrated: 6 probe measurements")
    measured = budgets["latency_ms (measured)"]
    assert measured["source"] == "measured" and measured["achieved"] == pytest.approx(rows[0]["measured_latency_ms"])
    saved = json.loads((run.dir / "report.json").read_text())
    assert saved["measured"][0]["id"] == rows[0]["id"]


def test_html_report_shows_the_measurements(host_run):
    from chipfit.report.html import render

    run, _ = host_run
    html = render(run).read_text()
    assert "Predicted vs measured" in html and "measured (min of 100 runs" in html
