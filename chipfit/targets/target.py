"""The Target record: hardware facts of one device, each with its source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Accelerator:
    """An NPU / GPU / TPU beside the CPU core."""

    kind: str
    macs_per_cycle: float
    clock_mhz: float
    power_mw: float | None = None
    sram_kb: float | None = None


@dataclass(frozen=True)
class Target:
    """Hardware facts of a device. Every figure's source is in ``sources`` (key = field name).

    >>> from chipfit import create_target
    >>> t = create_target("stm32l4r5")
    >>> t.core, t.clock_mhz, t.runtime
    ('cortex-m4', 120.0, 'x-cube-ai')
    >>> "clock_mhz" in t.sources
    True
    """

    name: str
    core: str
    clock_mhz: float
    sram_kb: float
    flash_kb: float
    runtimes: tuple[str, ...]
    active_power_mw: float
    sleep_power_uw: float
    cores: int = 1
    arena_kb: float | None = None
    mem_bandwidth_gbps: float | None = None
    accelerator: Accelerator | None = None
    peak_gmacs: Mapping[str, float] | None = None
    description: str = ""
    notes: str = ""
    origin: str = "builtin"
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> str:
        """The default runtime (the first listed)."""
        return self.runtimes[0]

    @property
    def ram_limit_kb(self) -> float:
        """RAM available to one tensor arena: the largest contiguous block where known, else all SRAM."""
        return self.arena_kb if self.arena_kb is not None else self.sram_kb

    def with_runtime(self, runtime: str) -> Target:
        """A copy whose default runtime is ``runtime``."""
        rest = tuple(r for r in self.runtimes if r != runtime)
        return replace(self, runtimes=(runtime, *rest))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sources"] = dict(self.sources)
        d["runtimes"] = list(self.runtimes)
        if self.peak_gmacs is not None:
            d["peak_gmacs"] = dict(self.peak_gmacs)
        return d
