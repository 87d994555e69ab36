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
    ``busy`` says whether the machine was busy while it was measured (see :mod:`chipfit.measure.reference`);
    :meth:`rescaled_ms` gives the latency at the quiet machine's speed.
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
    # the machine during this measurement (chipfit.measure.reference): the fixed reference workload's time,
    # timed interleaved with the models, the machine's quiet baseline for it, steal time and other processes'
    # CPU share from /proc/stat, and whether that made the machine busy (None: not checked)
    reference_ms: float | None = None
    reference_baseline_ms: float | None = None
    steal_pct: float | None = None
    others_cpu_pct: float | None = None
    busy: bool | None = None
    busy_reason: str = ""

    @property
    def slowdown(self) -> float | None:
        """How much slower than the quiet machine the reference ran during this measurement (None: unknown)."""
        if self.reference_ms is None or not self.reference_baseline_ms:
            return None
        return self.reference_ms / self.reference_baseline_ms

    def rescaled_ms(self, reference_ms: float | None = None) -> float:
        """``latency_ms`` rescaled to a machine that runs the reference in ``reference_ms`` (default: the quiet
        baseline); unchanged where this measurement timed no reference.

        >>> m = Measurement(model="m", runtime="r", device="d", latency_ms=1.2, estimator="min", p50_ms=1.3,
        ...                 p90_ms=1.4, p99_ms=1.5, runs=10, reference_ms=0.12, reference_baseline_ms=0.10)
        >>> round(m.rescaled_ms(), 6), round(m.rescaled_ms(0.06), 6)
        (1.0, 0.6)
        """
        to = reference_ms if reference_ms is not None else self.reference_baseline_ms
        if self.reference_ms is None or not to:
            return self.latency_ms
        return self.latency_ms * to / self.reference_ms

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
        busy = f"; machine BUSY: {self.busy_reason}" if self.busy else ""
        return f"{self.source} ({self.estimator}) by {self.runtime} on {self.device}{busy}"
