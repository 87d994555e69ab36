"""A run on the ``host`` target calibrates its cost model before searching and measures its finalists:
the report shows predicted beside measured, and judges the latency budget on the measurement too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import chipfit
from chipfit.cost.calibration import REFERENCE_TOLERANCE, Calibration

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.slow


def _rescale(basis: str) -> float:
    """The factor a calibrated price was rescaled by (1 when it was not)."""
    m = re.search(r"rescaled x([0-9.]+)", basis)
    return float(m.group(1)) if m else 1.0


def _contract(folder, **measure):
    doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    doc.update(name="digits-host", target="host", runtime="onnxruntime", duty_cycle=None, field=[])
    doc["budgets"] = {"latency_ms": {"max": 5}, "accuracy": 0.5}
    doc["search"].update(trials=4, epochs=2, rung_epochs=1, time_budget_s=None)  # stop on trials, not on time
    doc["measure"] = {"calibration_probes": 6, "finalists": 2, **measure}
    path = folder / "host.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in doc.items() if v is not None}))
    return path


@pytest.fixture(scope="module")
def host_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostrun")
    # a cache of its own: a calibration that another test in this worker cached must not stand in for the run's
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHIPFIT_CACHE_DIR", str(folder / "cache"))
        run = chipfit.create_run(_contract(folder), out=folder / "run")
        run.search()
        report = run.finalize().model_dump(mode="json", by_alias=True)
    return run, report


def test_run_calibrates_once_before_searching(host_run):
    run, _ = host_run
    cal = Calibration.load(run.dir / "calibration.json")
    assert cal.target == "host" and cal.measurements == 6 and "onnxruntime" in cal.runtime_version
    feasible = [r for r in run.candidates if r.state != "INFEASIBLE"]
    assert feasible
    g = run.best_cost()
    assert g.efficiency_source.startswith(cal.describe())  # then the machine-speed check
    # the search priced it calibrated. Both prices are rescaled to the machine's speed by the reference workload,
    # whose quiet baseline the run's own measurements can lower between the search and now: compare unscaled
    unscaled = g.latency_ms / _rescale(g.basis)
    ratio = run.best.predicted["latency_ms"] / unscaled
    assert ratio == pytest.approx(1.0, rel=2e-3) or REFERENCE_TOLERANCE < abs(ratio - 1) < 0.5, (ratio, g.basis)
    assert run.calibrate() == cal  # loaded, not measured again


def test_report_shows_predicted_beside_measured(host_run):
    run, report = host_run
    rows = report["measured"]
    assert rows and rows[0]["role"] == "best"
    for row in rows:
        assert row["measured_latency_ms"] > 0 and row["predicted_latency_ms"] > 0
        assert row["label"].startswith("measured (min of 100 runs") and row["judged_on_target"]
        assert "onnxruntime" in row["label"] and "host:" in row["label"]
        assert row["measured"]["peak_memory_bytes"] is not None
    budgets = {b["name"]: b for b in report["budgets"]}
    assert budgets["latency_ms"]["source"].startswith("predicted (cost model, calibrated latency; onnxruntime on host")
    assert budgets["latency_ms"]["predicted_by"].startswith("calibrated: 6 probe measurements")
    measured = budgets["latency_ms (measured)"]  # the contract's p90, on the measurement's p90
    assert measured["source"] == "measured" and measured["achieved"] == pytest.approx(rows[0]["measured"]["p90_ms"])
    assert "measured p90 of 100 runs by onnxruntime" in measured["basis"]
    assert budgets["ram_kb"]["source"].startswith("predicted (cost model, analytical")
    saved = json.loads((run.dir / "report.json").read_text())
    assert saved["measured"][0]["id"] == rows[0]["id"]


def test_html_report_shows_the_measurements(host_run):
    run, _ = host_run
    html = run.render().read_text()
    assert "Predicted vs measured" in html and "measured (min of 100 runs" in html


def test_a_cached_calibration_is_copied_into_the_run_and_an_unreachable_agent_is_recorded(tmp_path, monkeypatch,
                                                                                      host_run):
    run0, _ = host_run
    cache = tmp_path / "cache"
    monkeypatch.setenv("CHIPFIT_CACHE_DIR", str(cache))
    cal = Calibration.load(run0.dir / "calibration.json")
    from chipfit.cost.calibration import calibration_path

    cal.save(calibration_path("host", "onnxruntime", "int8", cal.device))
    token = tmp_path / "t.token"
    token.write_text("0123456789abcdef0123")
    token.chmod(0o600)
    path = _contract(tmp_path, agents=[{"url": "http://127.0.0.1:9", "token_file": str(token)}])
    run = chipfit.create_run(path, out=tmp_path / "run")
    run.search()  # no probe is measured: the cached calibration is used
    assert Calibration.load(run.dir / "calibration.json") == cal
    report = run.finalize().model_dump(mode="json", by_alias=True)  # the agent is down: recorded, not fatal
    failures = [m for m in report["measured"] if "failure" in m]
    assert failures and failures[0]["device"] == "http://127.0.0.1:9" and "127.0.0.1:9" in failures[0]["failure"]
    assert any(m.get("role") == "best" for m in report["measured"])  # the host still measured it
    assert "not measured on http://127.0.0.1:9" in run.render().read_text()
