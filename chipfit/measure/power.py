"""Power meters: energy per inference, measured.

Two ways to get a measured energy figure:

- :class:`RaplMeter` reads the Linux powercap (Intel/AMD RAPL) package counters before and after a run of
  inferences on this machine. It meters the whole CPU package, so other processes count too.
- A **trace** from an external meter (Joulescope, Otii, a bench supply logger) exported as CSV:
  :func:`load_trace` reads it into a :class:`PowerTrace`, :func:`energy_per_inference` integrates power over the
  inference windows the host recorded, and :func:`align_offset` estimates the offset between the host clock and
  the meter's clock. :class:`TraceMeter` records the windows while running the model and computes the energy
  once the trace file exists.

Every figure comes back as an :class:`EnergyReading` whose ``method`` says how it was obtained.

>>> import numpy as np
>>> t = np.linspace(0.0, 1.0, 1001)                        # 1 kHz trace, 1 s
>>> p = np.where((t >= 0.2) & (t < 0.3), 0.25, 0.05)       # 250 mW for 100 ms, 50 mW otherwise
>>> trace = PowerTrace(time_s=t, power_w=p, source="example")
>>> r = energy_per_inference(trace, [(0.2, 0.299)])
>>> round(r.energy_mj_per_inference, 2), r.inferences, r.source
(24.75, 1, 'measured')
"""

from __future__ import annotations

import csv
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from chipfit.errors import MeasurementError
from chipfit.logging import get_logger
from chipfit.naming import did_you_mean

log = get_logger(__name__)

__all__ = [
    "EnergyReading",
    "PowerMeter",
    "PowerTrace",
    "RaplMeter",
    "RaplZone",
    "TraceMeter",
    "align_offset",
    "energy_per_inference",
    "load_trace",
]


# --------------------------------------------------------------------------------------------------- records


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


@dataclass(frozen=True, eq=False)
class PowerTrace:
    """A power trace: strictly increasing ``time_s`` (meter clock, seconds) and ``power_w`` (watts).

    ``source`` names where it came from (a file path); ``derivation`` says how power was obtained from the
    file (a power column, or voltage times current). Arrays are copied to read-only float64.

    >>> tr = PowerTrace(time_s=[0.0, 1.0, 2.0], power_w=[0.1, 0.1, 0.3])
    >>> tr.duration_s, round(tr.energy_j, 3)
    (2.0, 0.3)
    >>> PowerTrace.from_dict(tr.to_dict()).power_w.tolist()
    [0.1, 0.1, 0.3]
    """

    time_s: np.ndarray
    power_w: np.ndarray
    source: str = ""
    derivation: str = "power"

    def __post_init__(self) -> None:
        where = f" ({self.source})" if self.source else ""
        t = np.array(self.time_s, dtype=np.float64, copy=True)
        p = np.array(self.power_w, dtype=np.float64, copy=True)
        if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
            raise MeasurementError(
                f"power trace{where}: expected time_s and power_w as 1-D arrays of the same length; "
                f"given shapes {t.shape} and {p.shape}."
            )
        if t.size < 2:
            raise MeasurementError(
                f"power trace{where}: expected at least 2 samples; given {t.size}. Record for longer."
            )
        for name, a in (("time_s", t), ("power_w", p)):
            if not np.all(np.isfinite(a)):
                i = int(np.flatnonzero(~np.isfinite(a))[0])
                raise MeasurementError(f"power trace{where}: expected finite {name}; sample {i} is {a[i]}.")
        steps = np.diff(t)
        if np.any(steps <= 0):
            i = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise MeasurementError(
                f"power trace{where}: expected strictly increasing time; sample {i} is at {t[i]!r} s after "
                f"{t[i - 1]!r} s."
            )
        t.setflags(write=False)
        p.setflags(write=False)
        object.__setattr__(self, "time_s", t)
        object.__setattr__(self, "power_w", p)

    @property
    def duration_s(self) -> float:
        return float(self.time_s[-1] - self.time_s[0])

    @property
    def energy_j(self) -> float:
        """Energy over the whole trace (trapezoid rule)."""
        return float(_cumulative_energy(self)[-1])

    @property
    def sample_interval_s(self) -> float:
        """Median time between samples."""
        return float(np.median(np.diff(self.time_s)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "time_s": self.time_s.tolist(),
            "power_w": self.power_w.tolist(),
            "source": self.source,
            "derivation": self.derivation,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PowerTrace:
        return cls(time_s=d["time_s"], power_w=d["power_w"], source=d.get("source", ""),
                   derivation=d.get("derivation", "power"))


# --------------------------------------------------------------------------------------------------- meters


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


@dataclass(frozen=True)
class RaplZone:
    """One RAPL powercap zone: its sysfs folder, its ``name`` (``package-0``, ``psys``) and counter range."""

    path: Path
    name: str
    max_energy_range_uj: int


_RAPL_TOP = re.compile(r"^intel-rapl:\d+$")

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
                "virtual machines and containers usually do not expose it. Use a trace from an external meter "
                "instead (chipfit.measure.power.load_trace)."
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
                f"starts with 'package'); given zones: {seen}. This CPU or kernel does not expose package energy."
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


# --------------------------------------------------------------------------------------------------- traces

_SCALE = {
    "time": {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9},
    "power": {"w": 1.0, "mw": 1e-3, "uw": 1e-6, "nw": 1e-9},
    "current": {"a": 1.0, "ma": 1e-3, "ua": 1e-6, "na": 1e-9},
    "voltage": {"v": 1.0, "mv": 1e-3},
}
_DEFAULT_UNIT = {"time": "s", "power": "W", "current": "A", "voltage": "V"}
_TIME_NAMES = {"time", "t", "timestamp", "elapsed", "elapsed time", "relative time", "seconds"}
_WORDS = {
    "power": {"power", "p"},
    "current": {"current", "curr", "i"},
    "voltage": {"voltage", "volt", "volts", "v"},
}
_UNIT_BRACKET = re.compile(r"^(.*?)\s*[\(\[]\s*([^\)\]]*?)\s*[\)\]]\s*$")
_UNIT_SUFFIX = re.compile(r"^(.*?)[\s_]+(s|sec|ms|us|ns|w|mw|uw|nw|a|ma|ua|na|v|mv)$", re.IGNORECASE)


def _norm_unit(u: str) -> str:
    return u.strip().lower().replace("µ", "u").replace("μ", "u")


def _split_header(h: str) -> tuple[str, str | None]:
    """``'Time (ms)'`` -> ``('time', 'ms')``; ``'current_mA'`` -> ``('current', 'ma')``; ``'power'`` -> no unit."""
    h = h.strip().lstrip("#").strip()
    m = _UNIT_BRACKET.match(h)
    if m and m.group(1):
        base, unit = m.group(1), _norm_unit(m.group(2))
    else:
        m = _UNIT_SUFFIX.match(h)
        base, unit = (m.group(1), _norm_unit(m.group(2))) if m and m.group(1) else (h, None)
    return " ".join(re.split(r"[^0-9a-z]+", base.lower())).strip(), unit


def _role(h: str) -> str | None:
    base, _ = _split_header(h)
    if base in _TIME_NAMES:
        return "time"
    words = set(base.split())
    for role, names in _WORDS.items():
        if words & names:
            return role
    return None


@dataclass
class _Column:
    role: str
    index: int
    header: str
    scale: float
    unit: str
    values: list[float] = field(default_factory=list)


def _named(header: str, name: str) -> bool:
    """Whether a header cell is ``name``, ignoring case, a leading ``#`` and (when ``name`` has none) a unit."""
    want = name.strip().lower()
    return header.strip().lstrip("#").strip().lower() == want or _split_header(header)[0] == want


def _pick(header: list[str], role: str, explicit: str | None, path: Path, line: int) -> int | None:
    if explicit is not None:
        for i, h in enumerate(header):
            if _named(h, explicit):
                return i
        raise MeasurementError(
            f"{path}: expected a column named '{explicit}' ({role}_col) in the header on line {line}; given "
            f"columns: {', '.join(repr(h) for h in header)}.{did_you_mean(explicit, header)}"
        )
    hits = [i for i, h in enumerate(header) if _role(h) == role]
    if len(hits) > 1:
        log.debug("%s: several %s columns (%s); using %r", path, role, [header[i] for i in hits], header[hits[0]])
    return hits[0] if hits else None


def _unit_for(role: str, header: str, units: Mapping[str, str], path: Path) -> tuple[float, str]:
    given = units.get(role)
    unit = _norm_unit(given) if given is not None else _split_header(header)[1]
    if unit is None:
        unit = _DEFAULT_UNIT[role].lower()
    if unit not in _SCALE[role]:
        allowed = ", ".join(_SCALE[role])
        origin = f"units['{role}']" if given is not None else f"column '{header}'"
        raise MeasurementError(
            f"{path}: expected a {role} unit among {allowed}; given '{unit}' ({origin}). Pass "
            f"units={{'{role}': '<unit>'}} to say which unit the column holds."
        )
    return _SCALE[role][unit], unit


def load_trace(
    path: str | Path,
    *,
    time_col: str | None = None,
    power_col: str | None = None,
    current_col: str | None = None,
    voltage_col: str | None = None,
    voltage_v: float | None = None,
    units: Mapping[str, str] | None = None,
    delimiter: str = ",",
) -> PowerTrace:
    """Read a power trace from a CSV file as Joulescope, Otii and bench loggers export it.

    The header is the first row holding a time column (``time``, ``Time (s)``, ``Timestamp``, ``t``, a leading
    ``#`` is ignored); rows above it (metadata) are skipped. Units come from the header (``Time (ms)``,
    ``current_mA``, ``Main current (µA)``) or default to s, W, A, V; ``units={"time": "ms"}`` overrides them.
    Power is a power column if there is one, else current times voltage (a voltage column, or the constant
    supply ``voltage_v``). Column names are matched case-insensitively; ``*_col`` picks one explicitly.

    >>> import pathlib, tempfile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "trace.csv"
    >>> _ = f.write_text("Time (ms),Current (mA),Voltage (V)\\n0,10,3.3\\n1,10,3.3\\n2,30,3.3\\n")
    >>> tr = load_trace(f)
    >>> tr.time_s.tolist(), tr.power_w.round(3).tolist()
    ([0.0, 0.001, 0.002], [0.033, 0.033, 0.099])
    >>> tr.derivation
    "current 'Current (mA)' x voltage 'Voltage (V)'"
    """
    path = Path(path)
    units = dict(units or {})
    for k, u in units.items():
        if k not in _SCALE:
            raise MeasurementError(f"load_trace: expected units keys among {', '.join(_SCALE)}; given '{k}'.")
        if _norm_unit(u) not in _SCALE[k]:
            raise MeasurementError(
                f"load_trace: expected units['{k}'] among {', '.join(_SCALE[k])}; given '{u}'."
            )
    if voltage_v is not None and not (math.isfinite(voltage_v) and voltage_v > 0):
        raise MeasurementError(f"load_trace: expected voltage_v as a supply voltage > 0 V; given {voltage_v!r}.")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise MeasurementError(f"trace file {path}: expected a CSV file exported by the power meter; it is {what}.")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return _read_trace(csv.reader(f, delimiter=delimiter), path, time_col=time_col, power_col=power_col,
                               current_col=current_col, voltage_col=voltage_col, voltage_v=voltage_v, units=units)
    except UnicodeDecodeError as e:
        raise MeasurementError(f"trace file {path}: expected a UTF-8 text CSV; it is not text ({e}).") from e
    except csv.Error as e:
        raise MeasurementError(f"trace file {path}: not a readable CSV ({e}).") from e


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _read_trace(rows: Any, path: Path, *, time_col: str | None, power_col: str | None, current_col: str | None,
                voltage_col: str | None, voltage_v: float | None, units: Mapping[str, str]) -> PowerTrace:
    header: list[str] | None = None
    header_line = 0
    last_text: list[str] | None = None
    for row in rows:
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if all(_is_number(c) for c in cells if c):
            raise MeasurementError(
                f"{path}, line {rows.line_num}: expected a header row naming a time column (e.g. 'time', "
                f"'Time (s)', 'timestamp', 't') before the data; given "
                + (f"columns {', '.join(repr(c) for c in last_text)}" if last_text else "no header row")
                + ". Pass time_col='<name>' to choose the time column, or add a header row."
            )
        if any(_named(c, time_col) if time_col is not None else _role(c) == "time" for c in cells):
            header, header_line = cells, rows.line_num
            break
        last_text = cells
    if header is None:
        if last_text is None:
            raise MeasurementError(f"trace file {path}: expected a CSV with a header row and samples; it is empty.")
        raise MeasurementError(
            f"{path}: expected a header row naming a time column (e.g. 'time', 'Time (s)', 'timestamp', 't'); "
            f"no row has one; the last row seen has columns {', '.join(repr(c) for c in last_text)}. "
            "Pass time_col='<name>' to choose the time column."
        )

    where = f"{path}, header on line {header_line}"
    ti = _pick(header, "time", time_col, path, header_line)
    assert ti is not None
    pi = _pick(header, "power", power_col, path, header_line)
    ci = vi = None
    if pi is None:
        ci = _pick(header, "current", current_col, path, header_line)
        vi = _pick(header, "voltage", voltage_col, path, header_line) if voltage_v is None else None
        if ci is None or (vi is None and voltage_v is None):
            missing = "current and voltage" if ci is None and vi is None else ("current" if ci is None else "voltage")
            raise MeasurementError(
                f"{where}: expected a power column (e.g. 'power', 'Power (mW)') or current and voltage columns "
                f"(e.g. 'Current (mA)', 'Voltage (V)'); no {missing} column among "
                f"{', '.join(repr(h) for h in header)}. Name them with power_col= / current_col= / voltage_col=, "
                "or give the constant supply voltage with voltage_v=."
            )
    cols = []
    for role, i in (("time", ti), ("power", pi), ("current", ci), ("voltage", vi)):
        if i is not None:
            scale, unit = _unit_for(role, header[i], units, path)
            cols.append(_Column(role=role, index=i, header=header[i], scale=scale, unit=unit))
    need = max(c.index for c in cols) + 1
    for row in rows:
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if len(row) < need:
            raise MeasurementError(
                f"{path}, line {rows.line_num}: expected at least {need} cells (up to column "
                f"'{header[need - 1]}'); given {len(row)}: {row!r}."
            )
        for c in cols:
            cell = row[c.index].strip()
            try:
                v = float(cell)
            except ValueError:
                v = math.nan
            if not math.isfinite(v):
                raise MeasurementError(
                    f"{path}, line {rows.line_num}, column '{c.header}': expected a finite number; given {cell!r}."
                )
            c.values.append(v)

    by = {c.role: c for c in cols}
    t = np.asarray(by["time"].values) * by["time"].scale
    if t.size < 2:
        raise MeasurementError(f"{path}: expected at least 2 samples after the header on line {header_line}; "
                               f"given {t.size}. Record for longer, or check the export.")
    steps = np.diff(t)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise MeasurementError(
            f"{path}, sample {i + 1} after the header on line {header_line}, column '{by['time'].header}': "
            f"expected time strictly increasing; given {by['time'].values[i]!r} after {by['time'].values[i - 1]!r}. "
            "Export one continuous capture, sorted by time."
        )
    if "power" in by:
        p = np.asarray(by["power"].values) * by["power"].scale
        derivation = f"power '{by['power'].header}'"
    else:
        i_a = np.asarray(by["current"].values) * by["current"].scale
        if "voltage" in by:
            v = np.asarray(by["voltage"].values) * by["voltage"].scale
            derivation = f"current '{by['current'].header}' x voltage '{by['voltage'].header}'"
        else:
            assert voltage_v is not None
            v = np.full_like(i_a, float(voltage_v))
            derivation = f"current '{by['current'].header}' x constant {voltage_v:g} V"
        p = i_a * v
    log.debug("%s: %d samples over %.4g s, %s", path, t.size, t[-1] - t[0], derivation)
    return PowerTrace(time_s=t, power_w=p, source=str(path), derivation=derivation)


def _cumulative_energy(trace: PowerTrace) -> np.ndarray:
    t, p = trace.time_s, trace.power_w
    return np.concatenate([[0.0], np.cumsum(np.diff(t) * (p[1:] + p[:-1]) * 0.5)])


def _energy_at(trace: PowerTrace, cum: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Energy (J) from the trace start to each time in ``x`` (inside the trace): the trapezoid on the samples,
    with power interpolated linearly at ``x``."""
    t, p = trace.time_s, trace.power_w
    i = np.clip(np.searchsorted(t, x, side="right") - 1, 0, t.size - 2)
    px = np.interp(x, t, p)
    return cum[i] + (x - t[i]) * (p[i] + px) * 0.5


def _as_windows(windows: Sequence[tuple[float, float]], what: str) -> np.ndarray:
    try:
        w = np.asarray(windows, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise MeasurementError(f"{what}: expected windows as (start_s, end_s) pairs; given {windows!r}.") from e
    if w.ndim != 2 or w.shape[1] != 2 or w.shape[0] < 1:
        raise MeasurementError(
            f"{what}: expected at least one window as (start_s, end_s) pairs; given an array of shape {w.shape}."
        )
    if not np.all(np.isfinite(w)):
        raise MeasurementError(f"{what}: expected finite window times; given {windows!r}.")
    bad = np.flatnonzero(w[:, 1] <= w[:, 0])
    if bad.size:
        k = int(bad[0])
        raise MeasurementError(
            f"{what}: expected each window to end after it starts; window {k} is ({w[k, 0]!r}, {w[k, 1]!r})."
        )
    return w


def _check_inside(trace: PowerTrace, w: np.ndarray, offset_s: float, what: str, label: str = "window") -> None:
    t0, t1 = float(trace.time_s[0]), float(trace.time_s[-1])
    shifted = w + offset_s
    out = np.flatnonzero((shifted[:, 0] < t0) | (shifted[:, 1] > t1))
    if out.size:
        k = int(out[0])
        raise MeasurementError(
            f"{what}: expected every {label} inside the trace{' ' + trace.source if trace.source else ''} "
            f"({t0:.6g} s to {t1:.6g} s on "
            f"the meter's clock); {label} {k} is host ({w[k, 0]:.6g}, {w[k, 1]:.6g}) s + offset {offset_s:.6g} s "
            f"= ({shifted[k, 0]:.6g}, {shifted[k, 1]:.6g}) s ({out.size} of {len(w)} outside). Check offset_s "
            "(trace_t = host_t + offset_s), estimate it with align_offset(), or record the trace for longer."
        )


def energy_per_inference(
    trace: PowerTrace,
    windows: Sequence[tuple[float, float]],
    *,
    offset_s: float = 0.0,
    idle_window: tuple[float, float] | None = None,
) -> EnergyReading:
    """Mean energy per inference: power integrated (trapezoid) over each inference window of the trace.

    ``windows`` are ``(start, end)`` times in seconds on the host clock; ``offset_s`` maps them to the trace
    (``trace_t = host_t + offset_s``). Power is interpolated linearly at the window edges. With
    ``idle_window`` (a host-clock window in which the device was idle), the mean idle power over it is
    subtracted from each inference.

    >>> tr = PowerTrace(time_s=[0.0, 1.0, 2.0, 3.0], power_w=[0.05, 0.05, 0.25, 0.25])
    >>> round(energy_per_inference(tr, [(1.0, 3.0)], offset_s=0.0).energy_mj_per_inference, 3)
    400.0
    >>> round(energy_per_inference(tr, [(9.0, 10.0)], offset_s=-7.0).energy_mj_per_inference, 3)
    250.0
    """
    what = "energy_per_inference"
    if not math.isfinite(offset_s):
        raise MeasurementError(f"{what}: expected a finite offset_s in seconds; given {offset_s!r}.")
    w = _as_windows(windows, what)
    _check_inside(trace, w, offset_s, what)
    cum = _cumulative_energy(trace)
    shifted = w + offset_s
    per = _energy_at(trace, cum, shifted[:, 1]) - _energy_at(trace, cum, shifted[:, 0])
    durations = w[:, 1] - w[:, 0]
    method = f"trace {trace.source or '(in memory)'}: trapezoid of {trace.derivation} over {len(w)} inference " \
             f"window{'s' if len(w) != 1 else ''}, offset {offset_s:.6g} s"
    idle_w: float | None = None
    if idle_window is not None:
        iw = _as_windows([idle_window], what)
        _check_inside(trace, iw, offset_s, what, label="idle window")
        idle_e = _energy_at(trace, cum, iw[:, 1] + offset_s) - _energy_at(trace, cum, iw[:, 0] + offset_s)
        idle_w = float(idle_e[0] / (iw[0, 1] - iw[0, 0]))
        total = _above_idle(float(per.sum()), float(durations.sum()), idle_w, what)
        method += f"; minus idle {idle_w * 1e3:.4g} mW over a {iw[0, 1] - iw[0, 0]:.4g} s idle window"
    else:
        total = float(per.sum())
    duration = float(durations.sum())
    return EnergyReading(
        energy_mj_per_inference=total * 1e3 / len(w),
        inferences=len(w),
        mean_power_mw=total * 1e3 / duration,
        duration_s=duration,
        method=method,
        idle_power_mw=None if idle_w is None else idle_w * 1e3,
    )


def align_offset(
    trace: PowerTrace,
    windows: Sequence[tuple[float, float]],
    *,
    max_lag_s: float | None = None,
    step_s: float | None = None,
) -> float:
    """Estimate ``offset_s`` (``trace_t = host_t + offset_s``) for host-clock inference windows.

    Assumption: power is higher while an inference runs than between inferences. The estimate is the offset
    that maximises the cross-correlation of a 0/1 "busy" indicator built from the windows with the trace
    power, i.e. the energy falling inside the shifted windows, over a grid of offsets that keep every window
    inside the trace (limited to ``±max_lag_s`` when given), refined down to ``step_s`` (default: the trace's
    sample interval). Evenly spaced windows are ambiguous by one period unless the trace also covers idle time
    before and after the run: record a little idle on both sides.

    >>> import numpy as np
    >>> t = np.arange(0.0, 2.0, 0.001)
    >>> busy = [(0.5 + 0.1 * k, 0.51 + 0.1 * k) for k in range(5)]          # meter clock
    >>> p = np.where(np.any([(t >= a) & (t < b) for a, b in busy], axis=0), 0.25, 0.05)
    >>> host = [(a - 0.3, b - 0.3) for a, b in busy]                         # host clock lags by 0.3 s
    >>> round(align_offset(PowerTrace(time_s=t, power_w=p), host), 3)
    0.3
    """
    what = "align_offset"
    w = _as_windows(windows, what)
    t0, t1 = float(trace.time_s[0]), float(trace.time_s[-1])
    lo, hi = t0 - float(w[:, 0].min()), t1 - float(w[:, 1].max())
    if max_lag_s is not None:
        if not (math.isfinite(max_lag_s) and max_lag_s > 0):
            raise MeasurementError(f"{what}: expected max_lag_s > 0 seconds; given {max_lag_s!r}.")
        lo, hi = max(lo, -max_lag_s), min(hi, max_lag_s)
    if lo > hi:
        span = float(w[:, 1].max() - w[:, 0].min())
        raise MeasurementError(
            f"{what}: expected the windows to fit inside the trace at some offset"
            + (f" within ±{max_lag_s:g} s" if max_lag_s is not None else "")
            + f"; the windows span {span:.6g} s and the trace covers {t0:.6g} s to {t1:.6g} s. Record the trace "
            "for longer" + (" or raise max_lag_s." if max_lag_s is not None else ".")
        )
    fine = trace.sample_interval_s if step_s is None else float(step_s)
    if not (math.isfinite(fine) and fine > 0):
        raise MeasurementError(f"{what}: expected step_s > 0 seconds; given {step_s!r}.")
    cum = _cumulative_energy(trace)

    def score(offsets: np.ndarray) -> np.ndarray:
        out = np.empty(offsets.size)
        chunk = max(1, 2_000_000 // len(w))
        for s in range(0, offsets.size, chunk):
            o = offsets[s:s + chunk, None]
            a = np.clip(w[None, :, 0] + o, t0, t1)
            b = np.clip(w[None, :, 1] + o, t0, t1)
            out[s:s + chunk] = (_energy_at(trace, cum, b.ravel()) - _energy_at(trace, cum, a.ravel())) \
                .reshape(b.shape).sum(axis=1)
        return out

    # Coarse grid no wider than half the shortest window (so no peak is stepped over), then refine.
    step = max(fine, min(float((w[:, 1] - w[:, 0]).min()) / 2, (hi - lo) / 20_000 if hi > lo else fine))
    grid = np.arange(lo, hi + step * 0.5, step) if hi > lo else np.array([lo])
    grid = np.clip(grid, lo, hi)
    s = score(grid)
    while True:
        k = int(np.argmax(s))
        best = float(grid[k])
        if step <= fine * (1 + 1e-9):
            break
        new = max(fine, step / 50)
        grid = np.clip(np.arange(best - step, best + step + new * 0.5, new), lo, hi)
        step = new
        s = score(grid)
    # On a plateau (windows shorter than the bursts), take its middle.
    near = s >= s[k] - 1e-9 * max(abs(s[k]), 1e-30)
    left = k
    while left > 0 and near[left - 1]:
        left -= 1
    right = k
    while right < s.size - 1 and near[right + 1]:
        right += 1
    best = float((grid[left] + grid[right]) / 2)
    log.debug("align_offset: %.6g s (searched %.6g to %.6g s, step %.3g s)", best, lo, hi, fine)
    return best


class TraceMeter(PowerMeter):
    """Energy from an external meter's trace: record inference windows now, integrate the trace later.

    Typical use: start the meter's capture, ``meter.record(fn, inferences=100, idle_s=1.0)``, stop the capture
    and export it as CSV, then ``meter.finish("capture.csv", offset_s=...)``. ``offset_s=None`` estimates the
    offset with :func:`align_offset` (the capture must include idle time before and after the run). Windows
    are taken with ``clock`` (default :func:`time.perf_counter`); pass ``clock=time.time`` when the meter
    timestamps with the wall clock. When the trace file exists by the time the run ends (a logger that writes
    as it goes), give it to the constructor and call :meth:`measure` as with any meter.

    >>> ticks = iter(range(100))
    >>> m = TraceMeter(clock=lambda: float(next(ticks)))
    >>> m.record(lambda: None, inferences=2)
    ((0.0, 1.0), (2.0, 3.0))
    >>> tr = PowerTrace(time_s=[0.0, 4.0], power_w=[0.5, 0.5])
    >>> m.finish(tr).energy_mj_per_inference
    500.0
    """

    name: ClassVar[str] = "trace"

    def __init__(self, trace: str | Path | PowerTrace | None = None, *, offset_s: float | None = 0.0,
                 load_options: Mapping[str, Any] | None = None, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.trace = trace
        self.offset_s = offset_s
        self.load_options = dict(load_options or {})
        self._clock = clock
        self._sleep = sleep
        self.windows: tuple[tuple[float, float], ...] = ()
        self.idle_window: tuple[float, float] | None = None

    def available(self) -> bool:
        """True: recording windows needs nothing; the trace itself comes from the external meter."""
        return True

    def record(self, fn: Callable[[], object], *, inferences: int,
               idle_s: float = 0.0) -> tuple[tuple[float, float], ...]:
        """Run ``fn`` ``inferences`` times and keep each call's (start, end) host time; with ``idle_s > 0``,
        first sleep that long and keep it as the idle window. Returns the inference windows."""
        _check_run("TraceMeter", inferences, idle_s)
        self.idle_window = None
        if idle_s > 0:
            a = self._clock()
            self._sleep(idle_s)
            self.idle_window = (a, self._clock())
        windows = []
        for _ in range(inferences):
            a = self._clock()
            fn()
            windows.append((a, self._clock()))
        self.windows = tuple(windows)
        return self.windows

    def finish(self, trace: str | Path | PowerTrace | None = None, *, offset_s: float | None = 0.0) -> EnergyReading:
        """Energy per inference of the recorded windows on ``trace`` (a CSV path or a PowerTrace; default: the
        one given to the constructor), with ``trace_t = host_t + offset_s``; ``offset_s=None`` estimates the
        offset with :func:`align_offset`."""
        if not self.windows:
            raise MeasurementError(
                "TraceMeter.finish: expected recorded inference windows; none yet. Call record(fn, inferences=...) "
                "while the meter captures, then finish(trace_path)."
            )
        src = self.trace if trace is None else trace
        if src is None:
            raise MeasurementError(
                "TraceMeter.finish: expected a trace (the CSV exported by the power meter); given none. Pass "
                "finish('capture.csv') or TraceMeter(trace='capture.csv')."
            )
        tr = src if isinstance(src, PowerTrace) else load_trace(src, **self.load_options)
        if offset_s is None:
            offset_s = align_offset(tr, self.windows)
            log.info("TraceMeter: estimated clock offset %.6g s", offset_s)
        return energy_per_inference(tr, self.windows, offset_s=float(offset_s), idle_window=self.idle_window)

    def measure(self, fn: Callable[[], object], *, inferences: int, idle_s: float = 0.0) -> EnergyReading:
        """:meth:`record` then :meth:`finish` on the trace given to the constructor."""
        if self.trace is None:
            raise MeasurementError(
                "TraceMeter.measure: expected a trace given to the constructor (TraceMeter(trace='capture.csv')); "
                "given none. When the capture is exported after the run, call record(fn, inferences=...) and "
                "then finish('capture.csv')."
            )
        self.record(fn, inferences=inferences, idle_s=idle_s)
        return self.finish(offset_s=self.offset_s)
