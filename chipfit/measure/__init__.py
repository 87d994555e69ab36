"""Measure what ships: runtimes that time a model file (ONNX Runtime, LiteRT, a device agent, a fake for
tests), the record they return, host profiling, calibration of the cost model, and power meters.

Nothing here imports torch, so the same code runs on a Raspberry Pi behind ``chipfit agent``.

>>> from chipfit.measure import create_runtime, list_runtimes
>>> "onnxruntime" in list_runtimes()
True
"""

from __future__ import annotations

from chipfit.measure.base import Runtime, measure_interleaved
from chipfit.measure.record import Measurement
from chipfit.measure.registry import create_runtime, list_runtimes

__all__ = ["Measurement", "Runtime", "create_runtime", "list_runtimes", "measure_interleaved"]
