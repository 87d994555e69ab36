"""One live owner per run directory.

The process that searches a run (``Run.search``, and ``finalize``/``report``, which write it) holds an
exclusive ``fcntl`` lock on ``<run>/owner.lock`` for as long as it works on the run. The kernel drops the
lock when the process dies however it dies, so liveness needs no guessing from pids: a second ``chipfit
run --resume`` on a directory whose owner lives refuses at once with :class:`RunInUseError` (exit 2), and
one whose owner is dead takes over cleanly. The owner's pid, host, start time and command are written into
the file only to say who holds it.

Taking ownership is also when the run's record files are made consistent: a torn last line of
``candidates.jsonl`` or ``study.log`` is repaired before anything is appended (see :mod:`chipfit.store`).

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> with hold(d) as me:
...     me.pid == os.getpid()
True
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from chipfit.errors import UsageError
from chipfit.logging import get_logger
from chipfit.store import CandidateStore, as_store_error, repair_tail

log = get_logger(__name__)

OWNER_FILE = "owner.lock"

F = TypeVar("F", bound=Callable[..., Any])


class RunInUseError(UsageError):
    """Another live process owns the run directory (exit 2)."""

    def __init__(self, message: str, owner: Owner | None = None) -> None:
        super().__init__(message)
        self.owner = owner


@dataclass(frozen=True)
class Owner:
    """Who holds a run directory: written into ``owner.lock`` by the owner, read for messages."""

    pid: int
    host: str
    started: str  # ISO 8601, UTC
    command: str

    @classmethod
    def me(cls) -> Owner:
        prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        prog = "chipfit" if prog in ("cli.py", "__main__.py") else prog
        cmd = " ".join([prog, *sys.argv[1:]])
        return cls(os.getpid(), socket.gethostname(),
                   dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), cmd[:300])

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        try:
            d = json.loads(text)
            return cls(int(d["pid"]), str(d.get("host", "?")), str(d.get("started", "?")),
                       str(d.get("command", "")))
        except (ValueError, TypeError, KeyError):
            return None

    def since(self) -> str:
        try:
            t = dt.datetime.fromisoformat(self.started)
            secs = int((dt.datetime.now(dt.UTC) - t).total_seconds())
        except (ValueError, TypeError):
            return f"since {self.started}"
        ago = f"{secs} s" if secs < 120 else f"{secs // 60} min" if secs < 7200 else f"{secs / 3600:.1f} h"
        return f"since {self.started} ({ago} ago)"


_held: dict[str, list[Any]] = {}  # real path of the run directory -> [fd, depth, Owner]
_mutex = threading.RLock()


def _read(fd: int) -> str:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0).decode("utf-8", errors="replace") if size else ""


def _in_use_message(run_dir: Path, owner: Owner | None) -> str:
    if owner is None:
        who, stop = "another chipfit process (it has not written its pid yet)", "stop it"
    else:
        who = f"chipfit pid {owner.pid} on {owner.host}, {owner.since()}"
        if owner.command:
            who += f" ('{owner.command}')"
        stop = f"stop it (kill {owner.pid})"
    return (f"run directory '{run_dir}' is in use by {who}. Two processes on one run would fail each other's "
            f"trials, so this one did nothing. Wait for that process to finish, or {stop} and then run "
            f"'chipfit run {run_dir} --resume'; to start a separate run, choose another --out.")


def _acquire(run_dir: Path) -> Owner:
    path = run_dir / OWNER_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise as_store_error(exc, path) or exc from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = Owner.parse(_read(fd))
            raise RunInUseError(_in_use_message(run_dir, owner), owner) from None
        except OSError as exc:  # a file system without locks (some network mounts)
            log.warning("cannot lock %s (%s); a second process on this run would not be detected", path, exc)
        previous = Owner.parse(_read(fd))
        if previous is not None and previous.pid != os.getpid():
            log.warning("run directory %s: its previous owner (pid %d on %s, %s) ended without releasing it "
                        "(killed or crashed); taking over", run_dir, previous.pid, previous.host, previous.since())
        me = Owner.me()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(me)).encode() + b"\n", 0)
            os.fsync(fd)
        except OSError as exc:
            raise as_store_error(exc, path) or exc from exc
        repair_run_files(run_dir)
    except BaseException:
        os.close(fd)
        raise
    _held[str(run_dir.resolve())] = [fd, 1, me]
    return me


def repair_run_files(run_dir: str | Path) -> None:
    """Repair torn last lines of the run's record files (candidates and the Optuna journal) before anything
    is appended to them. Needs the owner lock: Optuna appends to its journal under a lock of its own."""
    d = Path(run_dir)
    CandidateStore(d / "candidates.jsonl").repair()
    repair_tail(d / "study.log")


@contextlib.contextmanager
def hold(run_dir: str | Path) -> Iterator[Owner]:
    """Own ``run_dir`` for the block (re-entrant within a process); raises :class:`RunInUseError` when
    another live process owns it."""
    d = Path(run_dir)
    key = str(d.resolve())
    with _mutex:
        if key in _held:
            _held[key][1] += 1
        else:
            _acquire(d)
        me = _held[key][2]
    try:
        yield me
    finally:
        with _mutex:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                with contextlib.suppress(OSError):
                    os.ftruncate(entry[0], 0)  # empty file: released cleanly
                os.close(entry[0])


def owner_of(run_dir: str | Path) -> Owner | None:
    """The live owner of ``run_dir`` when another process holds it, else ``None`` (informational: the
    answer can change at once)."""
    path = Path(run_dir) / OWNER_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return Owner.parse(_read(fd)) or Owner(-1, "?", "?", "")
        return None
    finally:
        os.close(fd)


def owns_run(method: F) -> F:
    """Decorate a ``Run`` method that writes the run: it runs holding ``self.dir``'s owner lock, and an
    environmental OSError (disk full, read-only, I/O error) anywhere in it becomes one clear
    :class:`chipfit.store.StoreIOError`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with hold(self.dir):
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                err = as_store_error(exc, self.dir)
                if err is None or err is exc:
                    raise
                raise err from exc

    return wrapper  # type: ignore[return-value]
