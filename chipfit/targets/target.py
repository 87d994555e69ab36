"""The Target record: hardware facts of one device, each with its source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from chipfit.targets.memory import MemorySystem


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
    runtime_versions: Mapping[str, str] = field(default_factory=dict)  # runtime -> pinned version
    run_current_ua_per_mhz: float | None = None  # active power model: current per MHz at supply_v ...
    supply_v: float | None = None
    board_overhead_mw: float | None = None  # ... plus what the rest of the measured supply draws
    memory: MemorySystem | None = None  # flash wait states, caches, TCM, where weights and arena live

    @property
    def runtime(self) -> str:
        """The default runtime (the first listed), without its version."""
        return self.runtimes[0]

    def runtime_version(self, runtime: str | None = None) -> str | None:
        """The version of ``runtime`` (default: the default runtime) this target runs: the pinned one, else
        the latest chipfit knows (None for a runtime without known versions)."""
        from chipfit.targets.knowledge import runtimes

        name = runtime or self.runtime
        if name in self.runtime_versions:
            return self.runtime_versions[name]
        info = runtimes().get(name)
        return info.latest if info is not None else None

    def runtime_label(self, runtime: str | None = None) -> str:
        """``name@version`` of ``runtime`` (default: the default runtime), or the bare name when unversioned.

        >>> from chipfit import create_target
        >>> create_target("stm32h743.x-cube-ai@9.0").runtime_label()
        'x-cube-ai@9.0'
        """
        name = runtime or self.runtime
        v = self.runtime_version(name)
        return f"{name}@{v}" if v else name

    @property
    def power_model_mw(self) -> float | None:
        """Active power from the profile's power model (current per MHz x clock x supply + board overhead)."""
        if self.run_current_ua_per_mhz is None or self.supply_v is None:
            return None
        return self.run_current_ua_per_mhz * 1e-3 * self.clock_mhz * self.supply_v + (self.board_overhead_mw or 0.0)

    @property
    def ram_limit_kb(self) -> float:
        """RAM available to one tensor arena: the largest contiguous block where known, else all SRAM."""
        return self.arena_kb if self.arena_kb is not None else self.sram_kb

    def with_runtime(self, runtime: str) -> Target:
        """A copy whose default runtime is ``runtime`` (``name@version`` pins that version; a bare name means
        the latest version chipfit knows)."""
        from chipfit.targets.knowledge import resolve_runtime, split_runtime

        name, version = split_runtime(runtime)
        versions = dict(self.runtime_versions)
        versions.pop(name, None)
        if version is not None:
            versions[name] = resolve_runtime(runtime)[1] or version
        rest = tuple(r for r in self.runtimes if r != name)
        return replace(self, runtimes=(name, *rest), runtime_versions=versions)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sources"] = dict(self.sources)
        d["runtimes"] = list(self.runtimes)
        d["runtime_versions"] = {r: self.runtime_version(r) for r in self.runtimes if self.runtime_version(r)}
        if self.peak_gmacs is not None:
            d["peak_gmacs"] = dict(self.peak_gmacs)
        if self.memory is not None:
            d["memory"] = self.memory.to_dict()
        return d
