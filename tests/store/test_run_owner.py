"""One live owner per run directory (issue 12): a second ``run``/``--resume`` refuses while the first lives
(exit 2, naming the pid and since when) and takes over cleanly once it is dead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chipfit.errors import UsageError
from chipfit.runlock import OWNER_FILE, RunInUseError, hold, owner_of

REPO = Path(__file__).resolve().parents[2]
HOLDER = ("import sys, chipfit.runlock as L\n"
          "with L.hold(sys.argv[1]):\n    print('held', flush=True)\n    sys.stdin.read()\n")


def _holder(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_owner_refuses_while_first_lives_and_takes_over_when_dead(tmp_path, caplog):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunInUseError) as info, hold(tmp_path):
            pass
        msg = str(info.value)
        assert isinstance(info.value, UsageError) and info.value.owner.pid == proc.pid
        assert f"pid {proc.pid}" in msg and "since " in msg and "--resume" in msg and "kill" in msg
        assert owner_of(tmp_path).pid == proc.pid
    finally:
        proc.kill()
        proc.wait()
    assert owner_of(tmp_path) is None  # the kernel dropped the dead owner's lock
    with caplog.at_level("WARNING", logger="chipfit"), hold(tmp_path) as me, hold(tmp_path):  # re-entrant
        assert me.pid == os.getpid()
        assert json.loads((tmp_path / OWNER_FILE).read_text())["pid"] == os.getpid()
    assert f"pid {proc.pid}" in caplog.text and "taking over" in caplog.text
    assert (tmp_path / OWNER_FILE).read_text() == ""  # released cleanly


@pytest.mark.slow
def test_second_resume_on_a_live_run_exits_2_and_the_first_finishes(tmp_path, digits_contract):
    """Two real processes: the first is paused (SIGSTOP) once it has recorded a candidate, so it is alive
    and owns the run whatever the machine's load; the second ``--resume`` must refuse with exit 2 and touch
    nothing; the first, continued, finishes with exactly ``trials`` candidates."""
    import yaml

    contract = digits_contract(tmp_path, trials=4, epochs=1, rung_epochs=1, time_budget_s=None)
    doc = yaml.safe_load(contract.read_text())
    doc.setdefault("measure", {}).update(calibrate=False, finalists=0)
    contract.write_text(yaml.safe_dump(doc))
    out = tmp_path / "r"
    cands = out / "candidates.jsonl"
    cli = [sys.executable, "-m", "chipfit.cli", "run"]
    first = subprocess.Popen([*cli, str(contract), "--out", str(out), "--json"], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 1800  # an event is awaited; the limit only catches a hung run
        while not (cands.exists() and cands.read_bytes().count(b"\n") >= 1):
            assert first.poll() is None, f"the first run ended early: {first.returncode}"
            assert time.monotonic() < deadline, "the first run recorded nothing in 1800 s"
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None
        before = cands.read_bytes()
        second = subprocess.run([*cli, str(out), "--resume", "--json"], cwd=REPO, capture_output=True, text=True,
                                timeout=1800)
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"pid {first.pid}" in second.stderr and "in use" in second.stderr and "since" in second.stderr
        assert "Traceback" not in second.stderr
        assert cands.read_bytes() == before  # the refused process wrote nothing
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=1800)
    assert first.returncode in (0, 3), err[-3000:]
    keys = [json.loads(line)["key"] for line in cands.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 4
