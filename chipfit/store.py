"""Append-only record of candidates in the run directory (``candidates.jsonl``).

Each finished candidate is one JSON line, written and fsync'ed at once, so a run killed at any moment
keeps every candidate that finished; a line cut short by a kill is ignored on reading.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chipfit.logging import get_logger

log = get_logger(__name__)

STATES = ("INFEASIBLE", "PRUNED", "FAILED", "COMPLETE")


@dataclass(frozen=True)
class CandidateRecord:
    """One candidate, as recorded. ``constraints``: budget -> value (<= 0 holds); ``margins`` likewise."""

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
    rung_accuracy: float | None = None
    accuracy_float: float | None = None
    accuracy_int8: float | None = None
    accuracy_field_int8: float | None = None  # worst or mean over the field conditions (validation split)
    artifacts: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    source: str = "predicted"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CandidateRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())


class CandidateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: CandidateRecord) -> None:
        line = json.dumps(record.to_dict(), default=_jsonable, allow_nan=True)
        with self.path.open("a", encoding="utf-8") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # several workers may append to one run
            try:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def load(self) -> list[CandidateRecord]:
        if not self.path.exists():
            return []
        out = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(CandidateRecord.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                log.warning("%s:%d: unreadable candidate line ignored (%s)", self.path, n, exc)
        return out


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, tuple | set):
        return list(x)
    return str(x)
