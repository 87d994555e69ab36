"""Schema of a target file (built-in profiles and user-declared boards alike).

Every figure may be written plainly (``clock_mhz: 160``, sourced as "declared in <file>") or with its
source (``clock_mhz: {value: 160, source: "datasheet DS1234, table 5"}``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chipfit.naming import did_you_mean, one_of
from chipfit.targets.knowledge import RuntimeNameError, core_types, resolve_runtime, runtimes, split_runtime
from chipfit.targets.memory import ARENA_PLACES, WEIGHT_PLACES

ACCELERATOR_KINDS = ("ethos-u55", "edgetpu", "gpu-maxwell", "gpu-ampere")


class Sourced(BaseModel):
    """A figure and where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: Annotated[float, Field(gt=0)]
    source: Annotated[str, Field(min_length=1)]


def _sourced(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return {"value": value, "source": "declared"}
    return value


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _wrap_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, f in cls.model_fields.items():
            if key in out and _is_sourced(f.annotation):
                out[key] = _sourced(out[key])
        return out


def _is_sourced(ann: Any) -> bool:
    return ann is Sourced or Sourced in (getattr(ann, "__args__", ()) or ())


class Fact(BaseModel):
    """A memory-system fact (a count, a size, a yes/no or a place) and where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float | bool | str
    source: Annotated[str, Field(min_length=1)]


class MemorySpec(BaseModel):
    """``memory:`` of a target file (see :mod:`chipfit.targets.memory`); plain values are sourced "declared"."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    flash_wait_states: Fact | None = None
    flash_mhz_per_wait_state: Fact | None = None
    flash_cache: Fact | None = None
    icache_kb: Fact | None = None
    dcache_kb: Fact | None = None
    itcm_kb: Fact | None = None
    dtcm_kb: Fact | None = None
    weights_in: Fact | None = None
    arena_in: Fact | None = None

    @model_validator(mode="before")
    @classmethod
    def _wrap(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {k: ({"value": v, "source": "declared"} if isinstance(v, bool | int | float | str) else v)
                for k, v in data.items()}

    @model_validator(mode="after")
    def _kinds(self) -> MemorySpec:
        for key in ("flash_wait_states", "flash_mhz_per_wait_state", "icache_kb", "dcache_kb", "itcm_kb", "dtcm_kb"):
            f = getattr(self, key)
            if f is not None and (isinstance(f.value, bool | str) or f.value < 0):
                raise ValueError(f"memory.{key}: a number >= 0, got {f.value!r}")
        if self.flash_wait_states is not None and float(self.flash_wait_states.value) != int(
                self.flash_wait_states.value):
            raise ValueError(f"memory.flash_wait_states: a whole number, got {self.flash_wait_states.value!r}")
        if self.flash_cache is not None and not isinstance(self.flash_cache.value, bool):
            raise ValueError(f"memory.flash_cache: true or false, got {self.flash_cache.value!r}")
        for key, places in (("weights_in", WEIGHT_PLACES), ("arena_in", ARENA_PLACES)):
            f = getattr(self, key)
            if f is not None and f.value not in places:
                raise ValueError(f"memory.{key}: {one_of(places)}{_hint(str(f.value), places)}, got {f.value!r}")
        return self


class AcceleratorSpec(_Base):
    kind: str
    macs_per_cycle: Sourced
    clock_mhz: Sourced
    power_mw: Sourced | None = None
    sram_kb: Sourced | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in ACCELERATOR_KINDS:
            raise ValueError(f"{one_of(ACCELERATOR_KINDS)}{_hint(v, ACCELERATOR_KINDS)}")
        return v


class TargetSpec(_Base):
    """A board: the built-in profile format, which also accepts the short user form (``runtime:``, plain numbers)."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    core: str
    clock_mhz: Sourced
    sram_kb: Sourced
    flash_kb: Sourced
    runtimes: list[str] | None = None
    runtime: str | None = None
    cores: Sourced | None = None
    arena_kb: Sourced | None = None
    active_power_mw: Sourced | None = None
    sleep_power_uw: Sourced | None = None
    mem_bandwidth_gbps: Sourced | None = None
    run_current_ua_per_mhz: Sourced | None = None
    supply_v: Sourced | None = None
    board_overhead_mw: Sourced | None = None
    accelerator: AcceleratorSpec | None = None
    memory: MemorySpec | None = None
    description: str = ""
    notes: str = ""

    @field_validator("core")
    @classmethod
    def _core(cls, v: str) -> str:
        known = core_types()
        if v not in known:
            raise ValueError(f"a known core type, {one_of(known)}{_hint(v, known)}")
        return v

    @field_validator("runtimes")
    @classmethod
    def _runtimes(cls, v: list[str] | None) -> list[str] | None:
        for r in v or []:
            _check_runtime(r)
        if v is not None and not v:
            raise ValueError("at least one runtime")
        return v

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, v: str | None) -> str | None:
        if v is not None:
            _check_runtime(v)
        return v

    @model_validator(mode="after")
    def _compatible(self) -> TargetSpec:
        names = self.runtime_list()
        if not names:
            raise ValueError("a runtime: give 'runtime: <name>' or 'runtimes: [..]'")
        for r in names:
            info = runtimes()[split_runtime(r)[0]]
            if self.core not in info.cores:
                raise ValueError(f"runtimes that run on a {self.core}; runtime '{r}' runs on "
                                 f"{', '.join(info.cores)}")
            if info.accelerators and (self.accelerator is None or self.accelerator.kind not in info.accelerators):
                raise ValueError(f"runtime '{r}' needs an accelerator of kind {' or '.join(info.accelerators)}; "
                                 "declare it under 'accelerator:'")
        return self

    def runtime_list(self) -> list[str]:
        """Runtimes as written (``name`` or ``name@version``), the default first, each name once."""
        names = list(self.runtimes or [])
        if self.runtime:
            base = split_runtime(self.runtime)[0]
            names = [self.runtime] + [r for r in names if split_runtime(r)[0] != base]
        return names


def _check_runtime(v: str) -> None:
    known = runtimes()
    name, version = split_runtime(v)
    if name not in known:
        raise ValueError(f"a known runtime, {one_of(known)}{_hint(name, known)}")
    if version is not None:
        try:
            resolve_runtime(v)
        except RuntimeNameError as exc:
            raise ValueError(str(exc)) from None


def _hint(given: str, known: Any) -> str:
    """`` (did you mean 'x'?)`` or nothing, to append to an 'expected' text."""
    dym = did_you_mean(given, known).strip()
    return f" ({dym[0].lower()}{dym[1:]})" if dym else ""
