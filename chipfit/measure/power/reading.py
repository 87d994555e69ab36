"""Energy readings and the power-meter interface every meter implements, with the run checks they share."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from chipfit.errors import MeasurementError

__all__ = ["EnergyReading", "PowerMeter"]


@dataclass(frozen=True)
class EnergyReading:
    """Energy per inference, and how it was measured.

    ``mean_power_mw`` is the power that corresponds to the reported energy over ``duration_s`` (the metered
    time): with idle subtraction it is the mean power *above idle*, and ``idle_power_mw`` holds the idle power
    that was subtracted.

    >>> r = EnergyReading(energy_mj_per_inference=2.0, inferences=10, mean_power_mw=200.0, duration_s=0.1,
    ...                   method="example")
    >>> EnergyReading.from_dict(r.to_dict()) == r
    True
    """

    energy_mj_per_inference: float
    inferences: int
    mean_power_mw: float
    duration_s: float
    method: str
    source: str = "measured"
    idle_power_mw: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EnergyReading:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class PowerMeter(ABC):
    """Something that meters energy while a zero-argument callable runs ``inferences`` times.

    With ``idle_s > 0`` a meter first measures idle power for that long and reports energy above idle.
    """

    name: ClassVar[str] = ""

    @abstractmethod
    def available(self) -> bool:
        """Whether this meter can measure here and now (never raises)."""

    @abstractmethod
    def measure(self, fn: Callable[[], object], *, inferences: int, idle_s: float = 0.0) -> EnergyReading:
        """Run ``fn`` ``inferences`` times while metering; return the energy per inference."""


def _check_run(meter: str, inferences: int, idle_s: float) -> None:
    if isinstance(inferences, bool) or not isinstance(inferences, int) or inferences < 1:
        raise MeasurementError(f"{meter}.measure: expected inferences as an integer >= 1; given {inferences!r}.")
    if not (isinstance(idle_s, int | float) and math.isfinite(idle_s) and idle_s >= 0):
        raise MeasurementError(f"{meter}.measure: expected idle_s as a number of seconds >= 0; given {idle_s!r}.")


def _above_idle(energy_j: float, duration_s: float, idle_w: float, where: str) -> float:
    above = energy_j - idle_w * duration_s
    if above <= 0:
        raise MeasurementError(
            f"{where}: the energy above idle is not positive ({above * 1e3:.4g} mJ: {energy_j * 1e3:.4g} mJ "
            f"measured, {idle_w * 1e3:.4g} mW idle over {duration_s:.4g} s). The inference cost is below the "
            "meter's noise: run more inferences, or measure without idle subtraction (idle_s=0)."
        )
    return above
