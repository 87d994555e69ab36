"""The child process of :mod:`chipfit.measure.memory`: ``python -m chipfit.measure.memory_child KIND PATH THREADS``
imports the runtime, reads its peak RSS (``VmHWM``), loads the model, runs it 20 times, reads ``VmHWM`` again
and prints ``{"before": ..., "after": ...}`` as one JSON line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chipfit.errors import MeasurementError

_BASELINE_TFLITE = Path(__file__).with_name("data") / "baseline.tflite"


def _vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise MeasurementError("no VmHWM in /proc/self/status: peak memory needs Linux.")


def _identity_onnx() -> bytes:
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])])
    return helper.make_model(g).SerializeToString()


def _child(kind: str, path: str, threads: int) -> dict[str, int]:
    import numpy as np

    from chipfit.measure.modelfile import inspect_model_bytes

    if path == "-identity":
        data = _identity_onnx()
    elif path == "-baseline-tflite":
        data = _BASELINE_TFLITE.read_bytes()
    else:
        data = Path(path).read_bytes()
    mf = inspect_model_bytes(data, name=Path(path).name)
    if kind == "onnxruntime":
        import onnxruntime  # noqa: F401  (import before the first reading: the import is not the model's)

        from chipfit.measure.local import OrtRuntime as R
    else:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401

        from chipfit.measure.local import LiteRtRuntime as R
    before = _vm_hwm()
    fn = R(threads=threads).open(mf, mf.random_inputs(0))
    for _ in range(20):
        fn()
    np.zeros(1)
    return {"before": before, "after": _vm_hwm()}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
