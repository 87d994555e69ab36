"""``Measurement``: what one runtime measured for one model file on one device. Immutable, JSON-serialisable.

>>> m = Measurement(model="m.onnx", runtime="onnxruntime 1.32 (1 thread)", device="host", latency_ms=0.05,
...                 estimator="min", p50_ms=0.06, p90_ms=0.07, p99_ms=0.09, runs=100)
>>> Measurement.from_dict(m.to_dict()) == m
True
>>> m.source
'measured'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Measurement:
    """Latency (a drift-stable estimate plus percentiles), optional peak memory and energy.

    ``latency_ms`` is the estimate used to calibrate and judge the predictor; ``estimator`` says which
    statistic it is (e.g. the minimum over interleaved rounds). ``peak_memory_bytes`` is the peak resident
    memory of a fresh process running the model, minus the runtime's own baseline (``memory_method``).
    """

    model: str
    runtime: str
    device: str
    latency_ms: float
    estimator: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    runs: int
    peak_memory_bytes: int | None = None
    memory_method: str | None = None
    energy_mj: float | None = None
    energy_method: str | None = None
    input_shapes: tuple[tuple[int, ...], ...] = ()
    source: str = "measured"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shapes"] = [list(s) for s in self.input_shapes]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["input_shapes"] = tuple(tuple(int(x) for x in s) for s in d.get("input_shapes") or ())
        return cls(**kw)

    def label(self) -> str:
        """One line saying what this figure is: ``measured, min over ..., by <runtime> on <device>``."""
        return f"{self.source} ({self.estimator}) by {self.runtime} on {self.device}"
