"""Export to ONNX and post-training static int8 quantization with ONNX Runtime (QDQ, per-channel, S8S8).

>>> import numpy as np, torch, tempfile, pathlib
>>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3))
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> fp = export_onnx(m, (1, 1, 8, 8), d / "m.onnx")
>>> q = quantize_int8(fp, d / "m.int8.onnx", np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32))
>>> predict_onnx(q, np.zeros((2, 1, 8, 8), np.float32)).shape
(2,)
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from chipfit.errors import ExportError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], path: str | Path) -> Path:
    """Export ``model`` (eval mode) to a single-file ONNX model with a dynamic batch dimension."""
    path = Path(path)
    model = model.eval()
    x = torch.zeros(input_shape)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=17,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ExportError(f"ONNX export of the model failed: {type(exc).__name__}: {exc}") from exc
    return path


class _Calibration(CalibrationDataReader):
    def __init__(self, x: np.ndarray, batch: int = 32) -> None:
        self.batches = [x[i:i + batch] for i in range(0, len(x), batch)]
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {INPUT_NAME: self.batches[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def quantize_int8(fp32: str | Path, out: str | Path, representative: np.ndarray) -> Path:
    """Static int8 (QDQ, per-channel weights, int8 activations, MinMax ranges from the ``representative`` samples)."""
    fp32, out = Path(fp32), Path(out)
    pre = out.with_name(out.stem + ".pre.onnx")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(out), _Calibration(np.ascontiguousarray(representative, np.float32)),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except Exception as exc:
        raise ExportError(f"int8 quantization of {fp32.name} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        pre.unlink(missing_ok=True)
    return out


def session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def predict_onnx(path: str | Path, x: np.ndarray, batch: int = 256, threads: int = 1) -> np.ndarray:
    """Class predictions of an ONNX model (fp32 or int8) with ONNX Runtime."""
    sess = session(path, threads)
    name = sess.get_inputs()[0].name
    out = [sess.run(None, {name: np.ascontiguousarray(x[i:i + batch], np.float32)})[0].argmax(1)
           for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0,), np.int64)


def onnx_accuracy(path: str | Path, x: np.ndarray, y: np.ndarray, threads: int = 1) -> float:
    """Top-1 accuracy of an ONNX model measured with ONNX Runtime."""
    return float((predict_onnx(path, x, threads=threads) == y).mean()) if len(y) else float("nan")
