"""``TraceMeter``: energy per inference from an external power meter's capture (a CSV trace) over the inference
windows recorded while it captured."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from chipfit.errors import MeasurementError
from chipfit.logging import get_logger
from chipfit.measure.power.csvtrace import load_trace
from chipfit.measure.power.reading import EnergyReading, PowerMeter, _check_run
from chipfit.measure.power.trace import PowerTrace, align_offset, energy_per_inference

log = get_logger(__name__)


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
