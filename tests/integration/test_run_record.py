"""The typed run record: report.json round-trips through ``RunReport`` and every reader takes the typed object;
the task's classes come from the data; no traceback reaches a user."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from chipfit.cli import app
from chipfit.runreport import REPORT_VERSION, ReportError, RunReport, load_report, parse_report, report_schema

REPO = Path(__file__).resolve().parents[2]


def test_report_json_round_trips_through_run_report(finished_run):
    run_dir, printed = finished_run
    text = (run_dir / "report.json").read_text()
    report = load_report(run_dir)
    assert report.report_version == REPORT_VERSION and report.verdict == printed["verdict"]
    assert RunReport.model_validate_json(report.to_json()) == report
    assert json.loads(report.to_json()) == json.loads(text)  # nothing lost or added by the typed object
    assert "NaN" not in text and "Infinity" not in text
    assert report.classes == [str(i) for i in range(10)]


def test_schema_command_prints_the_published_schema():
    res = CliRunner().invoke(app, ["schema", "report"])
    assert res.exit_code == 0, res.output
    schema = json.loads(res.stdout)
    assert schema == json.loads(json.dumps(report_schema()))
    assert "verdict" in schema["properties"] and schema["properties"]["report_version"]["const"] == REPORT_VERSION
    bad = CliRunner().invoke(app, ["schema", "reprot"])
    assert bad.exit_code == 2 and "Did you mean 'report'" in bad.output


def test_an_older_report_is_migrated_and_a_newer_or_broken_one_is_a_clear_error(finished_run, tmp_path):
    data = json.loads((finished_run[0] / "report.json").read_text())
    old = {k: v for k, v in data.items() if k not in ("report_version", "classes", "stopped", "chipfit_version")}
    assert parse_report(old).classes == data["classes"]  # v1 (no version field) is migrated
    with pytest.raises(ReportError, match="newer than this chipfit reads"):
        parse_report({**data, "report_version": REPORT_VERSION + 1})
    with pytest.raises(ReportError, match="not a valid chipfit report"):
        parse_report({**data, "verdict": "MAYBE"})
    with pytest.raises(ReportError, match=r"no report\.json"):
        load_report(tmp_path)


def test_html_manifest_and_predictor_read_the_typed_report(finished_run):
    from chipfit.runtime import Predictor
    from chipfit.runtime.manifest import Manifest

    run_dir, _ = finished_run
    report = load_report(run_dir)
    manifest = Manifest.load(run_dir / "best" / "manifest.json")
    assert manifest.report == report and manifest.labels == report.classes
    p = Predictor(run_dir)
    assert p.report == report and p.labels == report.classes
    html = (run_dir / "report.html").read_text()
    assert f"verdict: <span class=\"{report.verdict}\">" in html


def _three_class_npz(folder: Path) -> Path:
    """A 3-class 8x8 image task with labels 3/7/42 (not 0..K-1): each class lights one band of the image."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.array([3, 7, 42]), 120)  # a validation split large enough to rank (no k-fold: faster)
    x = rng.normal(0.2, 0.05, (len(y), 8, 8, 1)).astype(np.float32)
    for band, label in enumerate((3, 7, 42)):
        x[y == label, 2 * band:2 * band + 3, :, 0] += 0.7
    rng.shuffle(idx := np.arange(len(y)))
    path = folder / "three.npz"
    np.savez(path, x=x[idx], y=y[idx])
    return path


def _contract(folder: Path, **task: object) -> Path:
    doc = {"name": "three", "task": {"data": {"source": "arrays", "path": str(_three_class_npz(folder)),
                                              "test_fraction": 0.25},
                                     "input": {"modality": "image", "shape": [8, 8, 1]}, **task},
           "target": "stm32l4r5", "budgets": {"ram_kb": 64, "accuracy": 0.5},
           "search": {"trials": 3, "epochs": 4, "rung_epochs": 2, "time_budget_s": None},
           "measure": {"finalists": 0}}
    path = folder / "three.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_three_class_npz_without_classes_runs_to_a_verdict_with_every_export(tmp_path):
    res = CliRunner().invoke(app, ["run", str(_contract(tmp_path)), "--out", str(tmp_path / "run"), "--json"])
    assert res.exit_code in (0, 3), res.output
    report = RunReport.model_validate_json(res.stdout)
    assert report.verdict in ("PASS", "FAIL") and len(report.classes) == 3
    assert report.best is not None, report.reason
    run_dir = tmp_path / "run"
    assert (run_dir / "report.html").is_file()
    best = run_dir / "best"
    for name in ("model.onnx", "model.int8.onnx", "model_data.h", "model_data.c", "manifest.json"):
        assert (best / name).is_file(), name
    import importlib.util

    if importlib.util.find_spec("litert_torch") is not None:
        assert (best / "model.tflite").is_file()
    # every candidate was costed with its real 3-class head
    from chipfit.run import load_run

    run = load_run(run_dir)
    head = run.space.build(run.space.smallest()[0])
    assert list(head.parameters())[-1].shape[0] == 3


def test_classes_that_disagree_with_the_data_exit_2_before_training(tmp_path):
    res = CliRunner().invoke(app, ["run", str(_contract(tmp_path, classes=5)), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert "5" in res.output and "3" in res.output and "classes" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "run" / "candidates").exists()  # nothing was trained


def test_an_unexpected_error_is_one_line_with_the_trace_in_the_run_log(finished_run, tmp_path, monkeypatch):
    import shutil

    import chipfit.report.build as build

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run[0], run_dir)

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("planted failure")

    monkeypatch.setattr(build, "build_report", boom)
    res = CliRunner().invoke(app, ["report", str(run_dir)])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "RuntimeError: planted failure" in lines[0] and "run.log" in lines[0]
    assert "Traceback" not in res.output
    assert "planted failure" in (run_dir / "run.log").read_text() and "Traceback" in (run_dir / "run.log").read_text()


def test_the_report_carries_the_tflm_accuracy_and_agreement(finished_run):
    import importlib.util

    if importlib.util.find_spec("tflite_micro") is None or importlib.util.find_spec("litert_torch") is None:
        pytest.skip("tflite-micro or litert-torch is not installed (pip install -e '.[tflm,tflite]')")
    report = load_report(finished_run[0])
    t = report.tflm
    assert t is not None and t.loaded, t
    assert t.samples == report.dataset.test and 0.0 <= t.accuracy_tflm <= 1.0
    assert t.accuracy_onnxruntime == pytest.approx(report.test_accuracy_int8, abs=1e-12)
    assert t.agreement is not None and t.agreement >= 0.9
    assert t.flagged == (t.gap_points > 1.0)
    assert "int8 numerics under TFLM" in (finished_run[0] / "report.html").read_text()


def test_the_report_says_where_the_compute_went(finished_run):
    """Every candidate falls in exactly one outcome; the outcomes' training seconds add up to the run's total,
    and the selected model's outcome is 'holds every budget'; report.html shows the same table."""
    from chipfit.contract import load_contract
    from chipfit.search.selection import OUTCOMES, outcome
    from chipfit.store import CandidateStore

    run_dir, _ = finished_run
    report = load_report(run_dir)
    rows = [c for c in report.compute if c.outcome in OUTCOMES]  # then teacher / cross-validation rows, if any
    assert rows and [c.outcome for c in rows] == [o for o in OUTCOMES if o in {c.outcome for c in rows}]
    assert report.compute[: len(rows)] == rows
    assert sum(c.candidates for c in rows) == sum(report.counts.values())
    assert sum(c.train_seconds for c in rows) == pytest.approx(report.train_seconds_total)
    records = {r.id: r for r in CandidateStore(run_dir / "candidates.jsonl").load()}
    budgets = load_contract(run_dir / "contract.yaml").budgets
    assert outcome(records[report.best.id], budgets) == "holds every budget"
    html = (run_dir / "report.html").read_text()
    assert "Where the compute went" in html and 'id="compute-table"' in html
