"""Slots for candidates shared by every worker of a run (processes on one machine, or a Ray driver).

A worker claims a config's key before it evaluates it; the claim and the count of claims are taken under
one file lock, so N workers never evaluate the same config twice and never record more than ``trials``
candidates. Claims of workers that died are released when the run is resumed (:func:`recover`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import TrialState

from chipfit.logging import get_logger

log = get_logger(__name__)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class Claims:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "claims"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = run_dir / "claims.lock"

    def count(self) -> int:
        return sum(1 for _ in self.dir.iterdir())

    def claim(self, key: str, limit: int) -> str:
        """'claimed', 'taken' (another worker has or had this key) or 'full' (``limit`` slots used)."""
        with locked(self.lock):
            if (self.dir / key).exists():
                return "taken"
            if self.count() >= limit:
                return "full"
            (self.dir / key).write_text(str(os.getpid()))
            return "claimed"

    def release(self, key: str) -> None:
        with locked(self.lock):
            (self.dir / key).unlink(missing_ok=True)

    def release_unrecorded(self, recorded: set[str]) -> int:
        with locked(self.lock):
            stale = [p for p in self.dir.iterdir() if p.name not in recorded]
            for p in stale:
                p.unlink()
        return len(stale)


def recover(study: optuna.Study, claims: Claims, recorded: set[str]) -> None:
    """Before (re)starting workers: trials left RUNNING by a killed run are failed (their work is lost and
    will be redone), and claims without a record are released."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        study.tell(t.number, state=TrialState.FAIL)
        log.info("trial %d was interrupted; marked failed", t.number)
    n = claims.release_unrecorded(recorded)
    if n:
        log.info("released %d claims of interrupted candidates", n)
