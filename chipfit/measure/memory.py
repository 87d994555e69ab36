"""Peak memory of a model, measured in a fresh process.

In-process RSS deltas mislead: the first session in a process pays the runtime's one-time set-up and later
ones reuse freed memory (measured on this machine: the second session in a process showed a much smaller
delta than a fresh process). So a child process imports the runtime, reads its
peak RSS (``VmHWM``), loads the model, runs it 20 times, and reads ``VmHWM`` again; for ONNX Runtime the
same is done for a one-node Identity model and subtracted, removing the runtime's own set-up cost. For LiteRT
the baseline is ``data/baseline.tflite``, a 1x1 float ReLU made by chipfit with
``litert_torch.convert(torch.nn.ReLU(), (torch.zeros(1, 1),)).export(...)`` (732 bytes).

The child is ``python -m chipfit.measure.memory_child KIND PATH THREADS``; it prints one JSON object.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from chipfit.errors import MeasurementError
from chipfit.measure.modelfile import ModelFile


def _spawn(kind: str, path: str, threads: int) -> int:
    try:
        proc = subprocess.run([sys.executable, "-m", "chipfit.measure.memory_child", kind, path, str(threads)],
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise MeasurementError(f"measuring the peak memory of '{Path(path).name}' took over 300 s; measure "
                               "without --memory.") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise MeasurementError(f"the memory-measuring process for '{Path(path).name}' failed: {tail[0][:300]}")
    try:
        d = json.loads(proc.stdout.strip().splitlines()[-1])
        return int(d["after"]) - int(d["before"])
    except (IndexError, ValueError, KeyError, TypeError):
        raise MeasurementError(f"the memory-measuring process for '{Path(path).name}' printed no reading "
                               f"(stdout: {proc.stdout[-200:]!r}).") from None


@functools.cache
def _baseline(kind: str, threads: int) -> int:
    return _spawn(kind, "-identity" if kind == "onnxruntime" else "-baseline-tflite", threads)


def fresh_process_peak(model: ModelFile, kind: str, threads: int = 1) -> tuple[int, str]:
    """``(bytes, method)``: peak-RSS growth of a fresh process loading and running ``model``, minus the
    runtime's baseline where one is known."""
    with tempfile.TemporaryDirectory(prefix="chipfit-mem-") as d:
        p = Path(d) / model.name
        p.write_bytes(model.data)
        delta = _spawn(kind, str(p), threads)
    base = _baseline(kind, threads)
    what = "an Identity model's" if kind == "onnxruntime" else "a 1x1 ReLU model's"
    rt = "ONNX Runtime" if kind == "onnxruntime" else "LiteRT"
    method = (f"fresh process: VmHWM growth over load + 20 runs, minus {what} ({base / 2**20:.1f} MiB, {rt}'s own "
              "set-up)")
    return max(0, delta - base), method

