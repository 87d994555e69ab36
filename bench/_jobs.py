"""One benchmark job: search an example contract with one seed, then train its reference architecture by the same
pipeline (same data, seed, epochs, recipes, int8 PTQ) and measure both on the test split.

Jobs run in their own processes (``python bench/_jobs.py JOB.json OUT.json``) so several can run side by side,
each with its own thread count, and a crash loses one job, not the table. Used by bench/quality.py and
bench/ablation.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """``job``: contract (example name), reference (or None: none trained), seed, minutes, threads, overrides
    (merged into ``search``)."""
    from chipfit import load_contract
    from chipfit.run import Run

    doc = yaml.safe_load((ROOT / "examples" / f"{job['contract']}.yaml").read_text())
    doc["search"] = merge(doc["search"], {"time_budget_s": job["minutes"] * 60, "trials": 200,
                                          "threads": job["threads"], "seed": job["seed"]})
    doc["search"] = merge(doc["search"], job.get("overrides", {}))
    if "path" in doc["task"]["data"]:
        doc["task"]["data"]["path"] = str((ROOT / "examples" / doc["task"]["data"]["path"]).resolve())
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "c.yaml").write_text(yaml.safe_dump(doc))
        c = load_contract(tmp / "c.yaml")
        t0 = time.monotonic()
        run = Run.create(c, out=tmp / "run")
        run.search()
        report = run.finalize(measure=False)
        qat = [r.qat for r in run.candidates if r.qat]
        search_s = time.monotonic() - t0
        t1 = time.monotonic()
        ref = run.evaluate_reference(job["reference"]) if job.get("reference") else {}
        ref_s = time.monotonic() - t1
        rec = ref.get("record", {"predicted": {}, "state": None})
    best = report.best
    return {**job, "search_seconds": search_s, "reference_seconds": ref_s, "verdict": report.verdict,
            "stopped": report.stopped,
            "counts": report.counts, "qat_runs": len(qat), "qat_kept": sum(1 for q in qat if q.get("kept")),
            "compute": [r.model_dump() for r in report.compute],
            "test_accuracy_int8": report.test_accuracy_int8,
            "best_latency_ms": best.predicted.get("latency_ms") if best else None,
            "best_config": best.config if best else None,
            "reference_test_accuracy_int8": ref.get("test_accuracy_int8"),
            "reference_latency_ms": rec["predicted"].get("latency_ms"),
            "reference_epochs": rec.get("epochs"), "reference_state": rec["state"]}


def run_jobs(jobs: list[dict[str, Any]], parallel: int) -> list[dict[str, Any]]:
    """Run ``jobs`` in subprocesses, ``parallel`` at a time; a failed job comes back with its error."""

    def one(job: dict[str, Any]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as d:
            jp, op = Path(d) / "job.json", Path(d) / "out.json"
            jp.write_text(json.dumps(job))
            r = subprocess.run([sys.executable, __file__, str(jp), str(op)], capture_output=True, text=True)
            if r.returncode != 0 or not op.exists():
                return {**job, "error": (r.stderr or r.stdout).strip().splitlines()[-1:]}
            out = json.loads(op.read_text())
        print(json.dumps({k: out.get(k) for k in ("contract", "seed", "overrides", "test_accuracy_int8",
                                                  "reference_test_accuracy_int8", "search_seconds")}), flush=True)
        return out

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, jobs))


if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(run_job(job), default=str))
