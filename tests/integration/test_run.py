"""chipfit run end to end on the embedded default (small budgets of trials and epochs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnxruntime as ort
import pytest
import yaml
from typer.testing import CliRunner

from chipfit.cli import app
from chipfit.data.sources import load_dataset
from chipfit.run import load_run
from chipfit.runtime.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[2]


SEARCH = {"trials": 8, "epochs": 6, "rung_epochs": 2, "time_budget_s": None}  # stop on trials, not on time


@pytest.fixture
def small_contract(digits_contract):
    return lambda tmp, **search: digits_contract(tmp, **{**SEARCH, **search})


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines() if line.strip()]


def test_report_fields(finished_run):
    run_dir, report = finished_run
    assert report["verdict"] == "PASS"
    for key in ("verdict", "budgets", "best", "test_accuracy_int8", "counts", "wall_seconds"):
        assert key in report
    for row in report["budgets"]:
        assert {"name", "limit", "achieved", "margin", "source", "pass"} <= set(row)
    assert {"id", "accuracy_int8", "accuracy_float", "predicted"} <= set(report["best"])
    assert set(report["counts"]) == {"INFEASIBLE", "PRUNED", "FAILED", "COMPLETE"}
    assert json.loads((run_dir / "report.json").read_text())["verdict"] == "PASS"
    for name in ("contract.yaml", "study.log", "candidates.jsonl", "best/model.onnx", "best/model.int8.onnx"):
        assert (run_dir / name).exists(), name


def test_candidates_jsonl_invariants(finished_run):
    run_dir, report = finished_run
    recs = records(run_dir)
    assert len(recs) == 8 and sum(report["counts"].values()) == 8
    assert len({r["key"] for r in recs}) == len(recs)  # a duplicate config is never retrained
    for r in recs:
        for key in ("id", "config", "state", "reason", "predicted", "constraints", "train_seconds", "accuracy_float",
                    "accuracy_int8"):
            assert key in r
        if r["state"] == "INFEASIBLE":
            assert r["train_seconds"] == 0
            assert any(v > 0 for v in r["constraints"].values()) and r["reason"]
        if r["train_seconds"] > 0:  # every trained candidate's predicted cost holds every budget
            assert all(v <= 0 for v in r["constraints"].values()), r
            for k in ("latency_ms", "energy_mj", "ram_bytes", "flash_bytes"):
                assert r["predicted"][k] > 0
        if r["state"] == "COMPLETE":
            assert 0 <= r["accuracy_int8"] <= 1 and 0 <= r["accuracy_float"] <= 1


def test_int8_model_reproduces_test_accuracy(finished_run):
    run_dir, report = finished_run
    run = load_run(run_dir)
    data = load_dataset(run.contract)
    pre = Preprocessor.from_dict(json.loads((run_dir / "best" / "preprocess.json").read_text()))
    sess = ort.InferenceSession(str(run_dir / "best" / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    x = pre(data.x_test)
    pred = sess.run(None, {sess.get_inputs()[0].name: x})[0].argmax(1)
    assert float((pred == data.y_test).mean()) == pytest.approx(report["test_accuracy_int8"], abs=1e-12)
    assert len(data.y_test) == report["dataset"]["test"]


def test_existing_run_needs_resume(finished_run, tmp_path):
    run_dir, _ = finished_run
    res = CliRunner().invoke(app, ["run", str(run_dir / "contract.yaml"), "--out", str(run_dir)])
    assert res.exit_code == 2 and "--resume" in res.output


def test_resume_of_finished_run_trains_nothing(finished_run):
    run_dir, _ = finished_run
    before = (run_dir / "candidates.jsonl").read_text()
    res = CliRunner().invoke(app, ["run", str(run_dir), "--resume", "--json"])
    assert res.exit_code == 0, res.output
    assert (run_dir / "candidates.jsonl").read_text() == before


def test_nothing_fits_exits_3_and_names_binding_budget(tmp_path, small_contract):
    p = small_contract(tmp_path, trials=5)
    data = yaml.safe_load(p.read_text())
    data["budgets"]["latency_ms"] = {"max": 0.0005}
    p.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["run", str(p), "--out", str(tmp_path / "o")])
    assert res.exit_code == 3
    assert "binding: latency_ms" in res.output and "closest candidate" in res.output
    recs = records(tmp_path / "o")
    assert recs and all(r["state"] == "INFEASIBLE" and r["train_seconds"] == 0 for r in recs)
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["verdict"] == "FAIL" and "latency_ms" in report["binding"] and report["closest"]


def _wait_for_records(run_dir: Path, n: int, proc: subprocess.Popen, log: Path, timeout_s: float = 1800) -> None:
    """Wait for an event — ``n`` records in candidates.jsonl — not for a time: on a busy machine a run may take
    many times longer than alone. The timeout only stops a hung run; an early exit fails at once, with its log."""
    cands = run_dir / "candidates.jsonl"
    deadline = time.monotonic() + timeout_s
    while not (cands.exists() and cands.read_bytes().count(b"\n") >= n):
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before recording {n} candidates:\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"the run recorded fewer than {n} candidates in {timeout_s:.0f} s (hung?)")
        time.sleep(0.02)


@pytest.mark.slow
def test_kill_9_then_resume_keeps_finished_candidates(tmp_path, small_contract):
    """``kill -9`` mid-search, then ``chipfit run RUN_DIR --resume`` from the CLI (search and report): the
    records finished before the kill are kept byte for byte, none is retrained, and the run completes.

    Event-driven: it kills once two candidates are recorded, however long that takes; it is stopped
    (SIGSTOP) first so that the count it asserts on cannot grow between reading and killing. The torn-line
    and in-process variants are in tests/store/test_store_reliability.py."""
    trials = 6
    contract = small_contract(tmp_path, trials=trials, epochs=2, rung_epochs=1)
    doc = yaml.safe_load(contract.read_text())
    doc.setdefault("measure", {}).update(calibrate=False, finalists=0)  # the resume's report: no measurements
    doc["field"] = []  # no augmentation, no robustness grid: the kill and the resume are under test
    contract.write_text(yaml.safe_dump(doc))
    out = tmp_path / "killed"
    log = tmp_path / "run.err"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "chipfit.cli", "run", str(contract), "--out", str(out), "--json"]
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=REPO)
        try:
            _wait_for_records(out, 2, proc, log)
            proc.send_signal(signal.SIGSTOP)
            before = records(out)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert 2 <= len(before) < trials, f"killed after {len(before)} of {trials} records: not mid-search"
    assert records(out) == before  # a stopped process writes nothing more
    res = subprocess.run([*cmd[:4], str(out), "--resume", "--json"], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=1800)
    assert res.returncode in (0, 3), res.stderr[-2000:]
    after = records(out)
    assert after[: len(before)] == before  # nothing lost, nothing rewritten
    keys = [r["key"] for r in after]
    assert len(keys) == len(set(keys)) == trials  # nothing retrained, the run completed
    ids = [r["id"] for r in after]
    assert len(ids) == len(set(ids))
    assert "verdict" in json.loads(res.stdout)
