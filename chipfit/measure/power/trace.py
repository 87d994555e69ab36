"""Power traces from external meters: the trace itself, energy over inference windows, clock alignment, and
the meter that records the windows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chipfit.errors import MeasurementError
from chipfit.logging import get_logger
from chipfit.measure.power.reading import EnergyReading, _above_idle

log = get_logger(__name__)

__all__ = ["PowerTrace", "align_offset", "energy_per_inference"]


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
