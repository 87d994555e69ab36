"""RAPL meter: energy from the Linux powercap (Intel/AMD RAPL) package counters of this machine."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from chipfit.errors import MeasurementError
from chipfit.logging import get_logger
from chipfit.measure.power.reading import EnergyReading, PowerMeter, _above_idle, _check_run

log = get_logger(__name__)

__all__ = ["RaplMeter", "RaplZone"]


@dataclass(frozen=True)
class RaplZone:
    """One RAPL powercap zone: its sysfs folder, its ``name`` (``package-0``, ``psys``) and counter range."""

    path: Path
    name: str
    max_energy_range_uj: int


_RAPL_TOP = re.compile(r"^intel-rapl:\d+$")

_EXTERNAL_METER = (
    "Measure with an external power meter instead: record the inference windows with `chipfit measure MODEL "
    "--windows-out windows.json` while the meter captures, then `chipfit energy CAPTURE.csv --windows windows.json`."
)
_PERMISSION_HINT = (
    "Since Linux 5.10 the RAPL energy counters are readable by root only (CVE-2020-8694). Run as root, or "
    "grant read access until the next boot with `sudo chmod o+r {files}` (a udev rule makes it permanent)."
)


class RaplMeter(PowerMeter):
    """Energy from the Linux powercap RAPL counters (``energy_uj``) of the CPU package zones.

    Zones are the top-level ``intel-rapl:N`` folders under ``root`` whose ``name`` starts with ``package``
    (one per socket; AMD Zen CPUs report theirs under the same driver); ``psys`` (the whole platform) is used
    only when there is no package zone. Sub-zones (``core``, ``uncore``, ``dram``) are ignored because the
    package already contains them, and so are ``intel-rapl-mmio`` duplicates. A counter that wrapped once
    during the run is corrected with ``max_energy_range_uj``; a run long enough to wrap twice cannot be
    detected (with the usual 262 kJ range that takes about 44 minutes at 100 W).

    RAPL meters the whole package: other processes and the Python loop count too. The counters update about
    once a millisecond, so run enough inferences to last at least a few hundred milliseconds. ``clock`` and
    ``sleep`` are injectable for tests.

    >>> RaplMeter("/nonexistent").available()
    False
    """

    name: ClassVar[str] = "rapl"

    def __init__(self, root: str | Path = "/sys/class/powercap", *, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.root = Path(root)
        self._clock = clock
        self._sleep = sleep

    def zones(self) -> tuple[RaplZone, ...]:
        """The zones this meter sums (package zones, else psys). Raises MeasurementError when there are none."""
        if not self.root.is_dir():
            raise MeasurementError(
                f"RAPL: expected the powercap folder {self.root}; it does not exist. RAPL needs Linux on an "
                "Intel or AMD CPU with the intel_rapl_common driver loaded (`sudo modprobe intel_rapl_msr`); "
                f"virtual machines and containers usually do not expose it. {_EXTERNAL_METER}"
            )
        found: list[tuple[str, Path]] = []
        for d in sorted(self.root.iterdir(), key=lambda p: _natural_key(p.name)):
            if not _RAPL_TOP.match(d.name):
                continue
            try:
                found.append(((d / "name").read_text().strip(), d))
            except OSError:
                log.debug("RAPL: cannot read %s", d / "name")
        chosen = [(n, d) for n, d in found if n.startswith("package")] or [(n, d) for n, d in found if n == "psys"]
        if not chosen:
            seen = ", ".join(f"{d.name} ({n})" for n, d in found) or "none"
            raise MeasurementError(
                f"RAPL: expected a package (or psys) zone under {self.root} (folders intel-rapl:N whose `name` "
                f"starts with 'package'); given zones: {seen}. This CPU or kernel does not expose package energy. "
                f"{_EXTERNAL_METER}"
            )
        zones = []
        for n, d in chosen:
            try:
                rng = int((d / "max_energy_range_uj").read_text().strip())
            except (OSError, ValueError) as e:
                raise MeasurementError(
                    f"RAPL: expected an integer in {d / 'max_energy_range_uj'}; could not read it ({e})."
                ) from e
            zones.append(RaplZone(path=d, name=n, max_energy_range_uj=rng))
        return tuple(zones)

    def _read_all(self, zones: Sequence[RaplZone]) -> list[int]:
        values: list[int] = []
        denied: list[Path] = []
        for z in zones:
            f = z.path / "energy_uj"
            try:
                values.append(int(f.read_text().strip()))
            except PermissionError:
                denied.append(f)
            except (OSError, ValueError) as e:
                raise MeasurementError(f"RAPL: expected an integer in {f}; could not read it ({e}).") from e
        if denied:
            files = " ".join(str(f) for f in denied)
            raise MeasurementError(
                f"RAPL: permission denied reading {', '.join(str(f) for f in denied)}. "
                + _PERMISSION_HINT.format(files=files)
            )
        return values

    def available(self) -> bool:
        try:
            self._read_all(self.zones())
        except MeasurementError as e:
            log.debug("RAPL not available: %s", e)
            return False
        return True

    def _delta_j(self, zones: Sequence[RaplZone], before: Sequence[int], after: Sequence[int]) -> float:
        total_uj = 0
        for z, b, a in zip(zones, before, after, strict=True):
            d = a - b
            if d < 0:
                d += z.max_energy_range_uj
                log.debug("RAPL: %s wrapped around during the run", z.name)
            total_uj += d
        return total_uj * 1e-6

    def measure(self, fn: Callable[[], object], *, inferences: int, idle_s: float = 0.0) -> EnergyReading:
        """Run ``fn`` ``inferences`` times; energy per inference from the package counters.

        With ``idle_s > 0``, idle power is first measured over ``idle_s`` seconds of sleep and subtracted.
        """
        _check_run("RaplMeter", inferences, idle_s)
        zones = self.zones()
        idle_w: float | None = None
        if idle_s > 0:
            e0, t0 = self._read_all(zones), self._clock()
            self._sleep(idle_s)
            e1, t1 = self._read_all(zones), self._clock()
            idle_w = self._delta_j(zones, e0, e1) / max(t1 - t0, 1e-12)
        before, t0 = self._read_all(zones), self._clock()
        for _ in range(inferences):
            fn()
        after, t1 = self._read_all(zones), self._clock()
        duration = t1 - t0
        if duration <= 0:
            raise MeasurementError(f"RaplMeter.measure: expected the run to take time; the clock gave {duration} s.")
        energy = self._delta_j(zones, before, after)
        names = "+".join(z.name for z in zones)
        method = f"RAPL {names} energy_uj, sysfs {', '.join(str(z.path) for z in zones)}"
        if idle_w is not None:
            energy = _above_idle(energy, duration, idle_w, "RaplMeter.measure")
            method += f"; minus idle {idle_w * 1e3:.4g} mW measured over {idle_s:g} s"
        if duration < 0.1:
            log.warning("RAPL: the run took %.3g s; counters update about every 1 ms, so run more inferences "
                        "for a stable figure", duration)
        return EnergyReading(
            energy_mj_per_inference=energy * 1e3 / inferences,
            inferences=inferences,
            mean_power_mw=energy * 1e3 / duration,
            duration_s=duration,
            method=method,
            idle_power_mw=None if idle_w is None else idle_w * 1e3,
        )


def _natural_key(s: str) -> list[object]:
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)]
