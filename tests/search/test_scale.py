"""Parallel search: local worker processes, and a Ray cluster on loopback with a worker killed mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chipfit.cli import app

REPO = Path(__file__).resolve().parents[2]


SEARCH = {"trials": 8, "epochs": 5, "rung_epochs": 2, "threads": 1}


def records(run_dir: Path) -> list[dict]:
    path = run_dir / "candidates.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def check_once_each(run_dir: Path, trials: int) -> list[dict]:
    recs = records(run_dir)
    keys, ids = [r["key"] for r in recs], [r["id"] for r in recs]
    assert len(recs) == trials, len(recs)
    assert len(set(keys)) == len(keys) and len(set(ids)) == len(ids)  # every candidate recorded exactly once
    return recs


def test_local_workers_share_one_run(tmp_path, digits_contract):
    path = digits_contract(tmp_path, accuracy=0.3, **SEARCH)
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "r"), "--workers", "2", "--json"])
    assert res.exit_code == 0, res.output
    recs = check_once_each(tmp_path / "r", 8)
    assert any(r["state"] == "COMPLETE" for r in recs)
    assert len(list((tmp_path / "r" / "claims").iterdir())) == 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster():
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'chipfit[ray]')")
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_bin is None:
        pytest.skip("the ray command is not on PATH")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false", *common], check=True,
                   capture_output=True, env=env, timeout=180)
    try:
        subprocess.run([ray_bin, "start", f"--address=127.0.0.1:{port}", *common], check=True, capture_output=True,
                       env=env, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env, timeout=180)


def _kill_one_training_worker(stop: threading.Event, out: Path, killed: list[int]) -> None:
    import psutil

    while not stop.is_set() and not killed:
        if records(out):  # the run is under way: kill a worker that is training a candidate
            for p in psutil.process_iter(["pid", "cmdline", "name"]):
                text = " ".join(p.info.get("cmdline") or []) + " " + (p.info.get("name") or "")
                if "train_task" in text and p.pid != os.getpid():
                    os.kill(p.pid, signal.SIGKILL)
                    killed.append(p.pid)
                    return
        time.sleep(0.2)


def test_ray_cluster_survives_a_killed_worker(tmp_path, ray_cluster, digits_contract):
    out = tmp_path / "ray-run"
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_training_worker, args=(stop, out, killed), daemon=True)
    killer.start()
    try:
        path = digits_contract(tmp_path, accuracy=0.3, **{**SEARCH, "epochs": 12})
        res = subprocess.run([sys.executable, "-m", "chipfit.cli", "run", str(path),
                              "--out", str(out), "--backend", "ray", "--address", ray_cluster, "--json"],
                             capture_output=True, text=True, cwd=REPO, timeout=900)
    finally:
        stop.set()
        killer.join(5)
    assert res.returncode in (0, 3), res.stderr[-3000:]
    recs = check_once_each(out, 8)
    assert killed, "no training worker was found to kill"
    assert any(r["state"] == "COMPLETE" for r in recs)
    for r in recs:  # artifacts were gathered on the driver
        for rel in r["artifacts"].values():
            assert (out / rel).exists(), rel
