"""Slots for candidates shared by every worker of a run (processes on one machine, or a Ray driver).

A worker claims a config's key before it evaluates it; the claim and the count of claims are taken under
one file lock, so N workers never evaluate the same config twice and never record more than ``trials``
candidates. Claims of workers that died are released when the run is resumed (:func:`recover`), and
candidates that failed for the environment's reasons (interrupted, out of disk or memory) are retried
(:func:`prepare_resume`). An I/O error on a claim (disk full, read-only) raises
:class:`chipfit.store.StoreIOError` and leaves no partial claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from chipfit.logging import get_logger
from chipfit.store import CandidateRecord, CandidateStore, as_store_error

log = get_logger(__name__)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block; an I/O error on the way is a StoreIOError."""
    try:
        f = path.open("a")
    except OSError as exc:
        raise as_store_error(exc, path) or exc from exc
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _io(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise as_store_error(exc, path) or exc from exc


class Claims:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "claims"
        with _io(self.dir):
            self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = run_dir / "claims.lock"

    def count(self) -> int:
        return sum(1 for _ in self.dir.iterdir())

    def keys(self) -> set[str]:
        """The keys claimed so far (by any worker)."""
        return {p.name for p in self.dir.iterdir()}

    def claim(self, key: str, limit: int) -> str:
        """'claimed', 'taken' (another worker has or had this key) or 'full' (``limit`` slots used)."""
        with locked(self.lock):
            if (self.dir / key).exists():
                return "taken"
            if self.count() >= limit:
                return "full"
            path = self.dir / key
            try:
                path.write_text(str(os.getpid()))
            except OSError as exc:
                with contextlib.suppress(OSError):
                    path.unlink()  # no partial claim left behind
                raise as_store_error(exc, path) or exc from exc
            return "claimed"

    def release_unrecorded(self, recorded: set[str]) -> int:
        with locked(self.lock), _io(self.dir):
            stale = [p for p in self.dir.iterdir() if p.name not in recorded]
            for p in stale:
                p.unlink()
        return len(stale)


def recover(study: optuna.Study, claims: Claims, recorded: set[str]) -> list[optuna.trial.FrozenTrial]:
    """Before (re)starting workers: trials left RUNNING by a killed run are failed (their work is lost and
    will be redone), and claims without a record are released. Returns the interrupted trials. Trials still
    WAITING (warm starts enqueued and not yet asked) stay queued: Optuna cannot tell them, and the resumed
    search asks them first, as the killed one would have."""
    interrupted = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in interrupted:
        study.tell(t.number, state=TrialState.FAIL)
        log.info("trial %d was interrupted; marked failed", t.number)
    n = claims.release_unrecorded(recorded)
    if n:
        log.info("released %d claims of interrupted candidates", n)
    return interrupted


@dataclass(frozen=True)
class ResumeSummary:
    """What :func:`prepare_resume` found and did."""

    retired: list[CandidateRecord] = field(default_factory=list)  # FAILED for the environment: retried
    interrupted: list[int] = field(default_factory=list)  # trial numbers a dead run left unfinished
    requeued: list[str] = field(default_factory=list)  # config keys queued to be evaluated again


def prepare_resume(run_dir: Path, study: optuna.Study) -> ResumeSummary:
    """Make a run directory ready for a (re)started search. Call under the run's owner lock
    (:func:`chipfit.runlock.hold`, which has already repaired torn record lines), before workers start.

    Candidates recorded FAILED for the environment's reasons (``failure_kind == "environment"``) are moved
    to ``candidates.retried.jsonl``; trials a dead run left unfinished are failed; claims without a record
    are released; and the configs of both are queued (``study.enqueue_trial``) so they are evaluated again
    first. Candidates that failed for their own reasons are kept and never retrained."""
    store = CandidateStore(run_dir / "candidates.jsonl")
    retired = store.retire(lambda r: r.retryable)
    for r in retired:
        log.warning("candidate %d (%s) failed for an environmental reason and is retried: %s", r.id, r.key,
                    r.reason[:200])
    recorded = {r.key for r in store.load()}
    interrupted = recover(study, Claims(run_dir), recorded)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    todo = [(by_number.get(r.id), r.key) for r in retired]
    todo += [(t, t.user_attrs.get("key")) for t in interrupted]
    requeued: list[str] = []
    for trial, key in todo:
        if trial is None or not key or key in recorded or key in requeued or trial.user_attrs.get("key") != key:
            continue
        if not trial.params:
            continue
        study.enqueue_trial(dict(trial.params))
        requeued.append(key)
    if requeued:
        log.info("queued %d candidates to be evaluated again", len(requeued))
    return ResumeSummary(retired, [t.number for t in interrupted], requeued)
