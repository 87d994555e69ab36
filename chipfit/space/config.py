"""ArchConfig: an architecture as a family name plus plain parameters; round-trips to a dict / JSON."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ArchConfig:
    """A candidate architecture.

    >>> c = ArchConfig("dscnn", {"width": 32, "blocks": 4})
    >>> ArchConfig.from_dict(c.to_dict()) == c, len(c.key)
    (True, 12)
    """

    family: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", dict(sorted(dict(self.params).items())))

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **self.params}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        d = dict(data)
        family = d.pop("family")
        return cls(str(family), {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()})

    @property
    def key(self) -> str:
        """A short stable hash: equal configs have equal keys (used to skip duplicates)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArchConfig) and self.to_dict() == other.to_dict()
