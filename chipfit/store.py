"""Append-only record of candidates in the run directory (``candidates.jsonl``), crash-safe.

Each finished candidate is one JSON line, written with one ``write`` under a file lock and fsync'ed at
once, so a run killed at any moment keeps every candidate that finished. What a kill or a full disk can
leave is a *torn* last line (a record cut mid-JSON, no newline). It is never glued to: before anything is
appended, and when a run is resumed, the torn tail is detected, reported (a :class:`StoreRepairWarning`
and the log) and repaired — a complete record that only lacks its newline is kept, anything else is cut
off and kept aside in ``candidates.torn`` (its candidate is redone on resume). A write that fails (disk
full, read-only file system, I/O error) is rolled back to the last complete line and raises
:class:`StoreIOError`, one clear line naming the file and what the error means.

A FAILED record says why in ``failure_kind``: ``"environment"`` (out of disk or memory, killed, an I/O
error: not the candidate's fault, retried on resume) or ``"candidate"`` (it cannot be built or trained:
kept). Records written before the field existed are classified from their reason.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chipfit.errors import ChipfitError
from chipfit.logging import get_logger

log = get_logger(__name__)

STATES = ("INFEASIBLE", "PRUNED", "FAILED", "COMPLETE")
FAILURE_KINDS = ("environment", "candidate")

#: errno values that mean "the machine cannot store the run", never "the candidate is bad".
ENV_ERRNOS = frozenset(e for e in (errno.ENOSPC, errno.EROFS, errno.EIO, getattr(errno, "EDQUOT", None),
                                   getattr(errno, "EFBIG", None)) if e is not None)
_ADVICE = {
    errno.ENOSPC: "free space on that disk (df -h shows it)",
    errno.EROFS: "the file system is mounted read-only: remount it read-write, or copy the run directory to a "
                 "writable disk",
    errno.EIO: "the disk reported an I/O error: check the device (dmesg) and copy the run directory to a healthy "
               "disk",
    getattr(errno, "EDQUOT", -1): "your disk quota is used up: free space or raise the quota",
    getattr(errno, "EFBIG", -2): "the file hit the file-size limit (ulimit -f): raise it",
}
#: reasons of FAILED records (also from before ``failure_kind`` existed) that mean the environment failed.
_ENV_REASON = re.compile(
    r"MemoryError|out of memory|OutOfMemory|can't allocate memory|Cannot allocate memory|DefaultCPUAllocator|"
    r"No space left on device|Disk quota exceeded|Read-only file system|Input/output error|Errno (?:5|28|30|122)\b|"
    r"StoreIOError|WorkerCrashedError|NodeDiedError|ActorDiedError|\bKilled\b|SIGKILL|signal 9\b|exit code -9\b|"
    r"returned -9\b|Wire format was corrupt")


class StoreIOError(ChipfitError):
    """The run directory cannot be written (disk full, read-only, I/O error): the run stops, its record
    consistent, and resumes where it stopped once the cause is fixed."""

    def __init__(self, path: str | Path, err: int, *, detail: str = "") -> None:
        self.path, self.errno = str(path), err
        name = errno.errorcode.get(err, str(err))
        meaning = os.strerror(err)
        advice = _ADVICE.get(err, "fix the storage of the run directory")
        run_dir = _run_dir_of(Path(path))
        resume = f"chipfit run {run_dir} --resume" if run_dir else "chipfit run RUN_DIR --resume"
        more = f" ({detail})" if detail else ""
        super().__init__(f"cannot write {path}: {meaning} ({name}, errno {err}){more}. The run stopped; every "
                         f"candidate recorded so far is kept. To continue: {advice}, then run '{resume}'.")


def _run_dir_of(path: Path) -> Path | None:
    for p in (path, *path.parents):
        with contextlib.suppress(OSError):
            if (p / "contract.yaml").is_file():
                return p
    return None


def env_os_error(exc: BaseException) -> OSError | None:
    """The OSError with an environmental errno (``ENV_ERRNOS``) in ``exc``'s cause/context chain, if any."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in ENV_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def as_store_error(exc: BaseException, path: str | Path | None = None) -> StoreIOError | None:
    """``exc`` as a :class:`StoreIOError` when an environmental OSError caused it, else ``None``."""
    if isinstance(exc, StoreIOError):
        return exc
    os_err = env_os_error(exc)
    if os_err is None:
        return None
    where = os_err.filename or path or "the run directory"
    return StoreIOError(where, os_err.errno)


def check_writable(directory: str | Path, probe_bytes: int = 256 * 1024) -> None:
    """Raise :class:`StoreIOError` when ``directory`` cannot take ``probe_bytes`` more (written, fsync'ed,
    removed). Used after a candidate fails with an error that does not say why (e.g. a model file cut short
    by a full disk reads back as "Wire format was corrupt")."""
    probe = Path(directory) / f".chipfit-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, b"\0" * probe_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in ENV_ERRNOS:
            raise StoreIOError(directory, exc.errno, detail="found after a candidate failed") from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def classify_failure(exc: BaseException, run_dir: str | Path | None = None) -> str:
    """``"environment"`` or ``"candidate"`` for an exception that failed a candidate.

    Raises :class:`StoreIOError` instead when the run directory cannot be written (the cause is in the
    exception chain, or a probe write into ``run_dir`` fails): such an error stops the run, it must not
    be recorded as the candidate's failure."""
    store_err = as_store_error(exc, run_dir)
    if store_err is not None:
        raise store_err from exc
    if run_dir is not None:
        check_writable(run_dir)
    if env_os_error(exc) is not None or isinstance(exc, MemoryError):
        return "environment"
    text = f"{type(exc).__name__}: {exc}"
    return "environment" if _ENV_REASON.search(text) else "candidate"


def infer_failure_kind(reason: str) -> str:
    """The failure kind of a FAILED record written before ``failure_kind`` existed, from its reason."""
    return "environment" if _ENV_REASON.search(reason or "") else "candidate"


@dataclass(frozen=True)
class CandidateRecord:
    """One candidate, as recorded. ``constraints``: budget -> value (<= 0 holds); ``margins`` likewise.
    ``failure_kind`` is set for FAILED records only (see the module docstring)."""

    id: int
    key: str
    config: dict[str, Any]
    state: str
    reason: str
    predicted: dict[str, Any]
    constraints: dict[str, float]
    margins: dict[str, float]
    train_seconds: float = 0.0
    epochs: int = 0
    rung_accuracy: float | None = None  # validation accuracy at the first rung
    rungs: dict[str, float] = field(default_factory=dict)  # epochs (as text) -> validation accuracy at that rung
    accuracy_float: float | None = None
    accuracy_int8: float | None = None
    accuracy_field_int8: float | None = None  # worst or mean over the field conditions (validation split)
    artifacts: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    source: str = "predicted"
    failure_kind: str | None = None
    # the training recipe as resolved (chipfit.train.recipes.Recipe), with the teacher's cache key when distilled
    recipe: dict[str, Any] = field(default_factory=dict)
    # quantization-aware fine-tuning, when the int8 drop called for it: accuracies before/after, kept or not
    qat: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.state == "FAILED" and self.failure_kind is None:
            object.__setattr__(self, "failure_kind", infer_failure_kind(self.reason))
        if self.failure_kind is not None and self.failure_kind not in FAILURE_KINDS:
            raise ValueError(f"failure_kind must be one of {FAILURE_KINDS}; given {self.failure_kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CandidateRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    @property
    def retryable(self) -> bool:
        """A FAILED candidate whose failure was the environment's (retried when the run is resumed)."""
        return self.state == "FAILED" and self.failure_kind == "environment"


class StoreRepairWarning(UserWarning):
    """A record file of a run was repaired (a torn last line left by a kill or a full disk)."""


@dataclass(frozen=True)
class Repair:
    """What :func:`repair_tail` did to a file whose last line was torn."""

    path: Path
    offset: int  # where the torn line starts
    size: int  # its length in bytes
    kept: bool  # True: a complete record that only lacked its newline (newline added); False: cut off
    aside: Path | None  # where the cut bytes were kept

    def message(self) -> str:
        if self.kept:
            return (f"{self.path}: the last record was complete but lacked its newline (the run was stopped "
                    f"while writing it); newline added")
        return (f"{self.path}: the last line was cut short at byte {self.offset + self.size} (the run was killed "
                f"or the disk filled while writing it); its {self.size} bytes were moved to {self.aside} and the "
                "candidate will be redone")


@contextlib.contextmanager
def _flocked_fd(path: Path, flags: int) -> Iterator[int]:
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the flock


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _torn_tail(fd: int) -> tuple[int, bytes] | None:
    """(offset, bytes) of the part after the last newline of the file open as ``fd``, when there is one."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    if os.pread(fd, 1, size - 1) == b"\n":
        return None
    pos, chunk = size, 64 * 1024
    while pos > 0:
        start = max(0, pos - chunk)
        block = os.pread(fd, pos - start, start)
        nl = block.rfind(b"\n")
        if nl >= 0:
            start += nl + 1
            return start, os.pread(fd, size - start, start)
        pos = start
    return 0, os.pread(fd, size, 0)


def _repair_fd(fd: int, path: Path, complete: Callable[[bytes], bool]) -> Repair | None:
    torn = _torn_tail(fd)
    if torn is None:
        return None
    offset, tail = torn
    try:
        if complete(tail):
            _write_all(fd, b"\n")  # fd is O_APPEND
            os.fsync(fd)
            rep = Repair(path, offset, len(tail), True, None)
        else:
            aside = path.with_suffix(".torn")
            with aside.open("ab") as f:
                f.write(tail + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.ftruncate(fd, offset)
            os.fsync(fd)
            rep = Repair(path, offset, len(tail), False, aside)
    except OSError as exc:
        raise as_store_error(exc, path) or exc from exc
    log.warning("%s", rep.message())
    warnings.warn(rep.message(), StoreRepairWarning, stacklevel=3)
    return rep


def _is_record(tail: bytes) -> bool:
    try:
        CandidateRecord.from_dict(json.loads(tail))
    except (ValueError, TypeError, UnicodeDecodeError):
        return False
    return True


def _is_json(tail: bytes) -> bool:
    try:
        json.loads(tail)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def repair_tail(path: str | Path, *, complete: Callable[[bytes], bool] = _is_json) -> Repair | None:
    """Repair a torn last line of the JSON-lines file ``path`` (see the module docstring); ``None`` when
    the file is absent or ends cleanly. Call it only while no live process appends to ``path`` without the
    file's own lock (e.g. Optuna's journal, whose lock is not this one: hold the run's owner lock)."""
    p = Path(path)
    if not p.exists():
        return None
    with _flocked_fd(p, os.O_RDWR | os.O_APPEND) as fd:
        return _repair_fd(fd, p, complete)


class CandidateStore:
    """``candidates.jsonl``: one JSON line per candidate; safe for several processes appending at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: CandidateRecord) -> None:
        """Append ``record`` (one write, fsync'ed). A torn last line left by a dead writer is repaired
        first; a failed write is rolled back and raises :class:`StoreIOError`."""
        data = (json.dumps(record.to_dict(), default=_jsonable, allow_nan=True) + "\n").encode("utf-8")
        try:
            with _flocked_fd(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT) as fd:
                # Every writer appends under this lock, so a torn tail seen here is a dead writer's.
                _repair_fd(fd, self.path, _is_record)
                before = os.fstat(fd).st_size
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, before)  # never leave a partial record behind
                    raise
        except OSError as exc:
            raise as_store_error(exc, self.path) or exc from exc

    def repair(self) -> Repair | None:
        """Detect, report and repair a torn last line; ``None`` when the file ends cleanly."""
        return repair_tail(self.path, complete=_is_record)

    def load(self) -> list[CandidateRecord]:
        """Every complete record, in order. A last line without its newline may be a write in progress and
        is read only when it parses; a broken line inside the file (glued records from an older chipfit)
        is salvaged record by record, with a warning."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        out: list[CandidateRecord] = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            last = n == len(lines)  # no newline after it
            try:
                out.append(CandidateRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError, UnicodeDecodeError) as exc:
                if last:
                    continue  # a write in progress, or a torn tail that repair() will handle
                found = _salvage(line)
                out.extend(found)
                log.warning("%s:%d: broken candidate line (%s); %d record(s) salvaged from it", self.path, n,
                            exc, len(found))
        return out

    def retire(self, which: Callable[[CandidateRecord], bool]) -> list[CandidateRecord]:
        """Move the records for which ``which`` is true to ``candidates.retried.jsonl`` (kept as history) and
        rewrite ``candidates.jsonl`` without them (atomically). Call only under the run's owner lock, before
        workers start: appends through another open file would go to the replaced file."""
        self.repair()
        recs = self.load()
        gone = [r for r in recs if which(r)]
        if not gone:
            return []
        history = self.path.with_name(self.path.stem + ".retried.jsonl")
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with history.open("a", encoding="utf-8") as f:
                for r in gone:
                    f.write(json.dumps(r.to_dict(), default=_jsonable, allow_nan=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with tmp.open("w", encoding="utf-8") as f:
                for r in recs:
                    if not which(r):
                        f.write(json.dumps(r.to_dict(), default=_jsonable, allow_nan=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise as_store_error(exc, self.path) or exc from exc
        return gone


def _salvage(line: bytes) -> list[CandidateRecord]:
    """Complete records inside a broken line (a torn record with the next one glued on)."""
    text = line.decode("utf-8", errors="replace")
    dec = json.JSONDecoder()
    out: list[CandidateRecord] = []
    for m in re.finditer(r'\{"id"', text):
        try:
            obj, end = dec.raw_decode(text, m.start())
            rec = CandidateRecord.from_dict(obj)
        except (ValueError, TypeError):
            continue
        if text[end:].strip() == "" or text[end:].lstrip().startswith('{"id"'):
            out.append(rec)
    return out


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, tuple | set):
        return list(x)
    return str(x)
