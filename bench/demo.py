"""Time `make demo`'s main job (`chipfit run examples/digits.yaml`) end to end and record its verdict.

Run: ``python bench/demo.py``. Writes the wall time, verdict and candidate counts to BENCHMARKS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root first (bench/profile.py shadows stdlib)

import json
import subprocess
import tempfile
import time

from bench._report import table, write_section

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "demo"
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "chipfit.cli", "run", str(ROOT / "examples" / "digits.yaml"),
                              "--out", str(out), "--json"], capture_output=True, text=True, cwd=ROOT)
        wall = time.monotonic() - t0
        report = json.loads(res.stdout)
    c = report["counts"]
    best = report["best"]
    rows = [["chipfit run examples/digits.yaml", f"{wall:.0f} s", report["verdict"], str(res.returncode),
             ", ".join(f"{v} {k.lower()}" for k, v in c.items()), f"{report['test_accuracy_int8']:.3f}",
             f"{best['predicted']['latency_ms']:.2f} ms", f"{report['train_seconds_infeasible']:.0f} s"]]
    body = table(["command", "wall time (incl. Python start-up)", "verdict", "exit code", "candidates",
                  "test int8 acc", "predicted latency of best", "training s on infeasible"], rows)
    body += ("\n\n`make demo` also bootstraps `.venv` on first use (a few minutes, mostly the torch wheel) and runs "
             "`chipfit check` (about 2 s). Goal: the run finishes on 2 cores in <= 5 minutes with a PASS verdict.\n")
    print(body)
    write_section("make demo (bench/demo.py)", body)


if __name__ == "__main__":
    main()
