"""Throughput of parallel search on this machine: local with 1 and 2 workers, Ray with 1 and 2 nodes.

The digits contract, the same trials, seed and training settings (1 training thread per candidate); reported:
candidates per minute of search wall time and Ray's overhead per candidate against local with as many
workers. Ray clusters are started on loopback with the ``ray`` command (1 CPU per node); their start-up
time is reported separately (`ray start`, head plus nodes, on 127.0.0.1). Run: ``python bench/scale.py [--trials 16]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root first (bench/profile.py shadows stdlib)

import argparse
import socket
import subprocess
import tempfile
import time

import yaml

from bench._report import table, write_section
from chipfit import load_contract
from chipfit.run import Run

ROOT = Path(__file__).resolve().parents[1]


def contract(tmp: Path, trials: int):
    doc = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    doc["search"].update({"trials": trials, "epochs": 6, "rung_epochs": 2, "threads": 1, "time_budget_s": 3600})
    p = tmp / "c.yaml"
    p.write_text(yaml.safe_dump(doc))
    return load_contract(p)


RAY = str(Path(sys.executable).parent / "ray")


def start_cluster(nodes: int) -> str:
    """A Ray cluster on loopback from the `ray` command: a head and ``nodes - 1`` more nodes, 1 CPU each."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", *common], check=True,
                   capture_output=True, timeout=180)
    for _ in range(nodes - 1):
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", *common], check=True, capture_output=True,
                       timeout=180)
    return f"127.0.0.1:{port}"


def timed_search(c, out: Path, **kw) -> tuple[float, dict]:
    run = Run.create(c, out=out)
    t = time.monotonic()
    run.search(**kw)
    return time.monotonic() - t, run.counts()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=16)
    args = ap.parse_args()
    rows, per = [], {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        c = contract(tmp, args.trials)
        for workers in (1, 2):
            wall, counts = timed_search(c, tmp / f"local{workers}", backend="local", workers=workers)
            per[("local", workers)] = wall / args.trials
            rows.append([f"local, {workers} worker{'s' if workers > 1 else ''}", f"{args.trials}",
                         f"{counts['COMPLETE'] + counts['PRUNED']}", f"{wall:.1f}", f"{args.trials / wall * 60:.1f}",
                         "-", "-"])
        for nodes in (1, 2):
            t = time.monotonic()
            address = start_cluster(nodes)
            startup = time.monotonic() - t
            try:
                wall, counts = timed_search(c, tmp / f"ray{nodes}", backend="ray", workers=nodes, address=address)
            finally:
                subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=180)
            overhead = wall / args.trials - per[("local", nodes)]
            rows.append([f"Ray, {nodes} node{'s' if nodes > 1 else ''} (1 CPU each)", f"{args.trials}",
                         f"{counts['COMPLETE'] + counts['PRUNED']}", f"{wall:.1f}", f"{args.trials / wall * 60:.1f}",
                         f"{overhead:+.2f}", f"{startup:.1f}"])
            print(rows[-1], flush=True)
    body = table(["backend", "candidates", "trained", "search wall s", "candidates / min",
                  "Ray overhead s per candidate (vs local, same parallelism)", "cluster start-up s"], rows)
    body += ("\n\nThe digits contract (examples/digits.yaml) with the trials above, 6 epochs (rung 2), one training "
             "thread per candidate, on this 2-core machine. Infeasible candidates are settled on the driver and "
             "never shipped to Ray. On 2 cores the second worker or node competes with the first for the same "
             "CPUs, so scaling here says little about a real cluster.\n")
    print(body)
    write_section("Parallel search: local workers and Ray (bench/scale.py)", body)


if __name__ == "__main__":
    main()
