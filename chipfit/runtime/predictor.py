"""``Predictor``: the device-side runtime. Loads a manifest and its model, preprocesses raw input exactly as
training did, runs ONNX Runtime or LiteRT, and returns labels or probabilities. Needs numpy, scipy, pydantic
(the typed manifest and run report) and the runtime only (no torch), so it runs on a Raspberry Pi.

Raw input is what the sensor or file gives, as the manifest's ``input`` states it (``Predictor.input``): for
the built-in digits, ``load_digits().images[i][..., None]`` with grey levels 0-16 — the recipe divides by 16 as
training did. The input is checked first:

- a wrong shape, or a non-numeric dtype, is an :class:`~chipfit.runtime.preprocess.InputError` (a
  ``ValueError``) saying what was expected, e.g. "expected shape [8, 8, 1] (one sample) or [N, 8, 8, 1] (a
  batch), layout HWC; given (64,)", and how to fix it;
- values outside a *nominal* range (by more than 1 % of its width), or input that looks already scaled to
  [0, 1] when raw values are 0-16 or 0-255, give an :class:`~chipfit.runtime.preprocess.InputRangeWarning`
  naming the expected and the given range; with ``strict=True`` they are an ``InputError``. NaN or infinite
  values are always an error. An *observed* range (float arrays, sensor series) is not enforced.

>>> from chipfit.runtime import Predictor
>>> Predictor("runs/missing")  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
chipfit.errors.ChipfitError: no manifest.json ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chipfit.errors import ChipfitError
from chipfit.runreport import RunReport
from chipfit.runtime.drift import DriftMonitor, DriftReference, DriftStatus
from chipfit.runtime.manifest import InputContract, Manifest
from chipfit.runtime.preprocess import Preprocessor, RawInput


def _manifest_path(path: str | Path) -> Path:
    p = Path(path)
    for cand in (p, p / "manifest.json", p / "best" / "manifest.json"):
        if cand.is_file():
            return cand
    raise ChipfitError(f"no manifest.json at or under '{p}': export the run first (chipfit export RUN_DIR).")


class Predictor:
    """Run a chipfit model on raw samples (one sample, or a batch with a leading dimension).

    ``strict=True`` turns an out-of-range warning into an error (see the module docstring for the policy).
    """

    def __init__(self, path: str | Path, *, backend: str = "onnxruntime", threads: int = 1,
                 monitor: bool = True, strict: bool = False) -> None:
        self.manifest_path = _manifest_path(path)
        self.dir = self.manifest_path.parent
        self.manifest = Manifest.load(self.manifest_path)
        self.report: RunReport = self.manifest.report  # what the run concluded, typed
        self.input: InputContract = self.manifest.input  # what raw input is: dtype, shape, layout, range, example
        self.strict = strict
        self.pre = Preprocessor.from_dict(self.manifest.preprocessing)
        i = self.input
        self.raw: RawInput = self.pre.raw or RawInput(tuple(i.shape), i.layout, i.dtype, i.range, i.range_kind,
                                                      i.scale, i.offset, i.sample_rate_hz, i.description, i.example)
        self.labels: list[str] = list(self.manifest.labels)
        self.backend = backend
        self.monitor: DriftMonitor | None = None
        if monitor and self.manifest.drift:
            self.monitor = DriftMonitor(DriftReference.from_dict(self.manifest.drift))
        if backend == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.log_severity_level = 3
            self._sess = ort.InferenceSession(str(self.dir / self.manifest.models.onnx_int8), so,
                                              providers=["CPUExecutionProvider"])
            self._name = self._sess.get_inputs()[0].name
            self._run = self._run_ort
        elif backend == "litert":
            from ai_edge_litert.interpreter import Interpreter

            model = self.manifest.models.tflite_int8
            if not model:
                raise ChipfitError("this export has no TFLite model; use backend='onnxruntime' or export tflite.")
            self._it = Interpreter(model_path=str(self.dir / model), num_threads=threads)
            self._it.allocate_tensors()
            self._in = self._it.get_input_details()[0]
            self._out = self._it.get_output_details()[0]
            self._run = self._run_litert
        else:
            raise ChipfitError(f"unknown backend '{backend}': expected onnxruntime or litert.")

    # -- backends -------------------------------------------------------------------------------------------
    def _run_ort(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {self._name: x})[0]

    def _run_litert(self, x: np.ndarray) -> np.ndarray:
        scale, zero = self._in["quantization"]
        oscale, ozero = self._out["quantization"]
        outs = []
        for sample in x:
            q = np.clip(np.round(sample[None] / scale + zero), -128, 127).astype(self._in["dtype"])
            self._it.set_tensor(self._in["index"], q.reshape(self._in["shape"]))
            self._it.invoke()
            y = self._it.get_tensor(self._out["index"]).astype(np.float32)
            outs.append((y - ozero) * oscale if oscale else y)
        return np.concatenate(outs, 0)

    # -- public API -----------------------------------------------------------------------------------------
    def _batch(self, raw: np.ndarray) -> tuple[np.ndarray, bool]:
        """Checked raw input -> (canonical float32 batch, whether one sample was given)."""
        batch, single = self.raw.check(raw, strict=self.strict, where=f"Predictor({self.manifest.name!r}) input")
        return self.raw.to_canonical(batch), single

    def logits_prepared(self, x: np.ndarray) -> np.ndarray:
        """Logits for already-preprocessed network input (``Predictor.pre.from_raw(raw)``; not checked)."""
        return self._run(np.ascontiguousarray(x, np.float32))

    def predict_proba(self, raw: np.ndarray) -> np.ndarray:
        """Class probabilities for one raw sample (``[classes]``) or a batch (``[N, classes]``)."""
        batch, single = self._batch(raw)
        p = self._proba(batch)
        return p[0] if single else p

    def _proba(self, batch: np.ndarray) -> np.ndarray:
        return self._softmax_and_monitor(batch, self._run(self.pre(batch)))

    def _softmax_and_monitor(self, batch: np.ndarray, logits: np.ndarray) -> np.ndarray:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        if self.monitor is not None:
            self.monitor.update(batch, p.max(axis=1))
        return p

    def predict(self, raw: np.ndarray) -> np.ndarray | int:
        """Class index for one raw sample, or an array of indices for a batch."""
        batch, single = self._batch(raw)
        logits = self._run(self.pre(batch))
        if self.monitor is not None:  # the monitor needs the confidence; plain prediction needs only argmax
            self._softmax_and_monitor(batch, logits)
        idx = logits.argmax(axis=1)
        return int(idx[0]) if single else idx

    def drift(self) -> DriftStatus | None:
        """The drift monitor's status over the last window of inputs (``None`` without a reference)."""
        return None if self.monitor is None else self.monitor.status()

    def label(self, raw: np.ndarray) -> str:
        """The label name for one raw sample."""
        i = self.predict(raw)
        return self.labels[i] if self.labels else str(i)
