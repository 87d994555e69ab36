"""Reading power traces from CSV files as Joulescope, Otii and bench loggers export them."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.errors import MeasurementError
from chipfit.logging import get_logger
from chipfit.measure.power.trace import PowerTrace
from chipfit.naming import did_you_mean

log = get_logger(__name__)

__all__ = ["load_trace"]

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

