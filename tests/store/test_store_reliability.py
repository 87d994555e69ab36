"""The run store is crash-safe: torn lines, I/O errors, failure kinds and retries on resume (issue 12).

Fast in-process tests first; then the real ones: a tiny ``chipfit run`` killed with SIGKILL and resumed, and
one on a tiny tmpfs that fills up (in a user+mount namespace; skipped where ``unshare`` cannot make one).
Tests that start runs wait for events (records in candidates.jsonl), never for a number of seconds.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest

from chipfit.errors import ChipfitError
from chipfit.search.claims import Claims, prepare_resume
from chipfit.store import (
    CandidateRecord,
    CandidateStore,
    StoreIOError,
    StoreRepairWarning,
    classify_failure,
    repair_tail,
)

REPO = Path(__file__).resolve().parents[2]
TINY = {"trials": 3, "epochs": 1, "rung_epochs": 1, "time_budget_s": None}  # stop on trials, not on time


def rec(i: int, state: str = "COMPLETE", **kw: object) -> CandidateRecord:
    base = {"id": i, "key": f"k{i:03d}", "config": {"family": "cnn", "width": i, "pad": "x" * (i * 7 % 50)},
            "state": state, "reason": kw.pop("reason", "trained 2 epochs (done)"),
            "predicted": {"latency_ms": 1.0 + i}, "constraints": {"ram_kb": -1.0}, "margins": {"ram_kb": 0.5}}
    return CandidateRecord(**{**base, **kw})


def lines_of(path: Path) -> list[dict]:
    """Every line of ``path`` parsed; fails on any malformed line or a missing final newline."""
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "the file must end with a complete line"
    return [json.loads(line) for line in raw.decode().splitlines()]


@pytest.fixture
def tiny_contract(digits_contract, tmp_path):
    """examples/digits.yaml cut to a tiny search on stm32l4r5 (no host calibration, no finalists)."""
    import yaml

    path = digits_contract(tmp_path, **TINY)
    doc = yaml.safe_load(path.read_text())
    doc.setdefault("measure", {}).update(calibrate=False, finalists=0)
    path.write_text(yaml.safe_dump(doc))
    return path


# -- torn lines ------------------------------------------------------------------------------------------
def test_append_after_torn_line_repairs_it_first(tmp_path):
    store = CandidateStore(tmp_path / "candidates.jsonl")
    for i in range(3):
        store.append(rec(i))
    raw = store.path.read_bytes()
    store.path.write_bytes(raw[: len(raw) - 40])  # kill -9 mid-write: the last record cut mid-JSON
    with pytest.warns(StoreRepairWarning, match="cut short"):
        store.append(rec(3))
    assert [r["id"] for r in lines_of(store.path)] == [0, 1, 3]  # never glued: the new record is kept
    assert [r.id for r in store.load()] == [0, 1, 3]
    start = raw[:-1].rfind(b"\n") + 1
    assert (tmp_path / "candidates.torn").read_bytes() == raw[start: len(raw) - 40] + b"\n"  # kept aside


def test_complete_record_without_newline_is_kept(tmp_path):
    store = CandidateStore(tmp_path / "candidates.jsonl")
    store.append(rec(0))
    store.append(rec(1))
    store.path.write_bytes(store.path.read_bytes()[:-1])
    with pytest.warns(StoreRepairWarning, match="lacked its newline"):
        store.append(rec(2))
    assert [r["id"] for r in lines_of(store.path)] == [0, 1, 2]


def test_glued_lines_from_older_versions_are_salvaged(tmp_path):
    path = tmp_path / "candidates.jsonl"
    one, two, three = (json.dumps(rec(i).to_dict()) for i in range(3))
    path.write_text(one + "\n" + two[:-30] + three + "\n")  # what chipfit < issue 12 wrote after a resume
    assert [r.id for r in CandidateStore(path).load()] == [0, 2]


def test_torn_study_journal_is_repaired_so_optuna_can_append(tmp_path):
    from chipfit.search.loop import open_study

    study = open_study(tmp_path, 0, 4)
    for _ in range(3):
        t = study.ask()
        t.suggest_int("x", 0, 9)
        study.tell(t, [0.5, 1.0])
    log = tmp_path / "study.log"
    log.write_bytes(log.read_bytes()[:-17])
    with pytest.warns(StoreRepairWarning):
        assert repair_tail(log) is not None
    study = open_study(tmp_path, 0, 4)  # appends; unrepaired, the glued line makes the journal unreadable
    study.tell(study.ask(), [0.1, 2.0])
    assert len(open_study(tmp_path, 0, 4).trials) >= 3


def test_kill_points_property(tmp_path):
    """Seeded random kill points: the file is cut at any byte; a resume repairs it and records what was not
    complete. Every candidate complete before the kill is present exactly once, and no line is malformed."""
    rng = random.Random(12)
    records = [rec(i) for i in range(8)]
    for n in range(120):
        path = tmp_path / f"c{n}.jsonl"
        store = CandidateStore(path)
        for r in records:
            store.append(r)
        raw = path.read_bytes()
        cut = rng.randrange(0, len(raw) + 1)
        path.write_bytes(raw[:cut])
        ends = [i + 1 for i, b in enumerate(raw) if b == ord("\n")]
        complete = [r.id for r, end in zip(records, ends, strict=True) if end <= cut]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StoreRepairWarning)
            store.repair()  # what taking ownership of the run does
            done = {r.id for r in store.load()}
            for r in records:  # the resumed run records what it does not have
                if r.id not in done:
                    store.append(r)
        ids = [d["id"] for d in lines_of(path)]
        assert sorted(ids) == list(range(8)), (n, cut)
        assert ids[: len(complete)] == complete, (n, cut)


# -- I/O errors --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EIO])
def test_append_io_error_rolls_back_and_says_what(tmp_path, monkeypatch, err):
    store = CandidateStore(tmp_path / "candidates.jsonl")
    store.append(rec(0))
    before = store.path.read_bytes()
    real_write = os.write

    def half_then_fail(fd: int, data: bytes) -> int:
        if len(data) > 100:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(err, os.strerror(err))
        return real_write(fd, data)

    monkeypatch.setattr("chipfit.store.os.write", half_then_fail)
    with pytest.raises(StoreIOError) as info:
        store.append(rec(1))
    msg = str(info.value)
    assert str(store.path) in msg and os.strerror(err) in msg and errno.errorcode[err] in msg
    assert "--resume" in msg and "\n" not in msg
    monkeypatch.undo()
    assert store.path.read_bytes() == before  # consistent: no partial record left


def test_claim_on_full_disk_is_a_clear_error_and_leaves_no_claim(tmp_path, monkeypatch):
    claims = Claims(tmp_path)

    def full(self: Path, *a: object, **k: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(StoreIOError, match="No space left on device"):
        claims.claim("abc", 4)
    monkeypatch.undo()
    assert claims.count() == 0


def test_failure_kinds(tmp_path, monkeypatch):
    assert classify_failure(MemoryError("x"), tmp_path) == "environment"
    assert classify_failure(RuntimeError("DefaultCPUAllocator: can't allocate memory"), tmp_path) == "environment"
    assert classify_failure(ValueError("negative dimension"), tmp_path) == "candidate"
    wrapped = RuntimeError("export failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "m.onnx"))
    with pytest.raises(StoreIOError, match=r"m\.onnx"):
        classify_failure(wrapped, tmp_path)

    class DecodeError(Exception):
        pass

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("chipfit.store.os.write", full)  # a model file cut by a full disk reads back corrupt
    with pytest.raises(StoreIOError, match="ENOSPC"):
        classify_failure(DecodeError("Error parsing message: Wire format was corrupt"), tmp_path)


def test_old_records_are_read_and_classified(tmp_path):
    old = {k: v for k, v in rec(0, "FAILED", reason="MemoryError: ").to_dict().items() if k != "failure_kind"}
    own = {**old, "id": 1, "key": "k001", "reason": "build: ValueError: kernel larger than input"}
    done = {**old, "id": 2, "key": "k002", "state": "COMPLETE", "reason": "trained"}
    path = tmp_path / "candidates.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in (old, own, done)))
    got = CandidateStore(path).load()
    assert [r.failure_kind for r in got] == ["environment", "candidate", None]
    assert [r.retryable for r in got] == [True, False, False]
    assert CandidateRecord.from_dict(got[0].to_dict()) == got[0]


def test_resume_retries_environment_failures_and_keeps_candidate_failures(tmp_path):
    from chipfit.search.loop import open_study

    study = open_study(tmp_path, 0, 6)
    store, claims = CandidateStore(tmp_path / "candidates.jsonl"), Claims(tmp_path)
    kinds = ["COMPLETE", "environment", "candidate", "COMPLETE"]
    params = {}
    for kind in kinds:
        t = study.ask()
        x = t.suggest_int("x", 0, 1000)
        key = f"x{x}"
        t.set_user_attr("key", key)
        claims.claim(key, 6)
        r = rec(t.number, key=key) if kind == "COMPLETE" else rec(
            t.number, "FAILED", key=key, reason=f"{kind} trouble", failure_kind=kind)
        store.append(r)
        study.tell(t, [0.5, 1.0]) if kind == "COMPLETE" else study.tell(t, state=optuna.trial.TrialState.FAIL)
        params[kind] = (key, x)
    interrupted = study.ask()  # a kill during this candidate's training
    xi = interrupted.suggest_int("x", 0, 1000)
    interrupted.set_user_attr("key", f"x{xi}")
    claims.claim(f"x{xi}", 6)

    summary = prepare_resume(tmp_path, open_study(tmp_path, 0, 6))
    env_key = params["environment"][0]
    assert [r.key for r in summary.retired] == [env_key]
    assert summary.interrupted == [interrupted.number]
    assert set(summary.requeued) == {env_key, f"x{xi}"}
    kept = [r["key"] for r in lines_of(store.path)]
    assert env_key not in kept and params["candidate"][0] in kept and len(kept) == 3
    assert [r["key"] for r in lines_of(tmp_path / "candidates.retried.jsonl")] == [env_key]
    assert claims.count() == 3  # the retried and the interrupted candidates' slots are free again
    again = open_study(tmp_path, 0, 6)
    asked = {again.ask().suggest_int("x", 0, 1000) for _ in range(2)}
    assert asked == {params["environment"][1], xi}  # the same configs are evaluated again, first


@pytest.mark.slow
def test_memory_error_during_training_is_retried_on_resume(tmp_path, tiny_contract, monkeypatch):
    """A candidate that ran out of memory is recorded FAILED (environment) and the run goes on; a resume
    trains it again, and the run ends with exactly ``trials`` candidates, each key once."""
    import chipfit
    from chipfit.search.loop import SearchLoop

    real = SearchLoop._train
    calls = []

    def oom_once(self, *a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("simulated: the OS refused 2 GB")
        return real(self, *a, **k)

    monkeypatch.setattr(SearchLoop, "_train", oom_once)
    run = chipfit.create_run(tiny_contract, out=tmp_path / "r").search()
    failed = [r for r in run.candidates if r.state == "FAILED"]
    assert len(failed) == 1 and failed[0].failure_kind == "environment"
    run = chipfit.load_run(tmp_path / "r").search()
    recs = lines_of(tmp_path / "r" / "candidates.jsonl")
    keys = [r["key"] for r in recs]
    assert len(keys) == len(set(keys)) == TINY["trials"]
    assert failed[0].key in keys and not any(r["state"] == "FAILED" for r in recs)


# -- real processes --------------------------------------------------------------------------------------
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "chipfit.cli", *args]


def _wait_for_records(path: Path, n: int, proc: subprocess.Popen, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before recording {n} candidates")
        time.sleep(0.02)
    pytest.fail(f"no {n} records in {path} after {timeout} s")


@pytest.mark.slow
def test_sigkill_then_resume_with_a_torn_line(tmp_path, tiny_contract):
    """A real tiny run killed with SIGKILL after its first record, its last line then cut at a random byte
    (a kill mid-write); the resume repairs it, keeps every complete record once and finishes the run."""
    out = tmp_path / "r"
    cands = out / "candidates.jsonl"
    proc = subprocess.Popen(_cli("run", str(tiny_contract), "--out", str(out), "--json"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_records(cands, 1, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    raw = cands.read_bytes()
    start = raw[:-1].rfind(b"\n") + 1
    cut = random.Random(len(raw)).randrange(start + 1, len(raw) - 1)
    cands.write_bytes(raw[:cut])  # the last record torn
    before = [json.loads(line) for line in raw[:start].decode().splitlines()]
    import chipfit  # the resume's search, here (the report after it is another test's business)

    with pytest.warns(StoreRepairWarning, match="cut short"):  # reported without -v
        chipfit.load_run(out).search()
    after = lines_of(cands)
    assert after[: len(before)] == before
    keys = [r["key"] for r in after]
    assert len(keys) == len(set(keys)) == TINY["trials"]
    assert (out / "candidates.torn").exists()


def _can_unshare(where: Path) -> bool:
    """Whether this process may mount a tmpfs in a new user+mount namespace (Linux, unprivileged userns)."""
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {where}"],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="user and mount namespaces are Linux's")
def test_disk_full_stops_with_one_line_and_resume_finishes(tmp_path, tiny_contract):
    """A real ``chipfit run`` on a 96 KiB tmpfs: it stops with one clear line (exit 1, no traceback), the
    record stays consistent, and the run directory (copied off the full disk) resumes to exactly ``trials``
    candidates (the resume runs the search only: the report's TFLite export is not under test here)."""
    mnt, logs = tmp_path / "mnt", tmp_path / "logs"
    mnt.mkdir()
    logs.mkdir()
    if not _can_unshare(mnt):
        pytest.skip("cannot create a user+mount namespace here (unshare -rm) for a tiny tmpfs")
    py = sys.executable
    script = f"""
set -u
mount -t tmpfs -o size=96k tmpfs {mnt}
{py} -m chipfit.cli run {tiny_contract} --out {mnt}/r --json > {logs}/1.out 2> {logs}/1.err; echo $? > {logs}/1.rc
cp -a {mnt}/r {logs}/r
"""
    subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, timeout=900, check=True)
    err1 = (logs / "1.err").read_text()
    assert (logs / "1.rc").read_text().strip() == "1", err1[-3000:]
    assert "Traceback" not in err1 and "No space left on device (ENOSPC" in err1, err1[-3000:]
    assert len([line for line in err1.splitlines() if line.strip()]) == 1, err1
    assert "--resume" in err1 and str(mnt / "r") in err1
    cands = logs / "r" / "candidates.jsonl"
    first = lines_of(cands) if cands.exists() else []
    assert not any(r["state"] == "FAILED" for r in first)  # the disk's failure is never the candidate's
    import chipfit  # space freed: resume the copied run directory here

    chipfit.load_run(logs / "r").search()
    second = lines_of(cands)
    assert second[: len(first)] == first
    keys = [r["key"] for r in second]
    assert len(keys) == len(set(keys)) == TINY["trials"]


def test_store_io_error_is_a_chipfit_error():
    assert issubclass(StoreIOError, ChipfitError)
