"""Full-integer TFLite (int8 weights, activations, input and output) through litert-torch's PT2E flow.

No TensorFlow is needed. The exported file's input keeps the network's channels-first layout; its input and
output are int8 with the scales and zero points recorded in the manifest.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chipfit.errors import ExportError
from chipfit.export.base import Exporter, register_exporter

if TYPE_CHECKING:
    from chipfit.bestmodel import BestModel


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Silence Python and native (C++ glog / absl) output of the converter, which writes to fds 1 and 2."""
    saved = [os.dup(1), os.dup(2)]
    quiet = io.StringIO()
    try:
        with open(os.devnull, "w") as null, warnings.catch_warnings(), contextlib.redirect_stdout(quiet), \
                contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def convert_int8_tflite(model: object, input_shape: tuple[int, ...], representative: np.ndarray, out: Path) -> Path:
    """Quantize ``model`` (a torch module) with PT2E (symmetric, per-channel, static) and write a .tflite."""
    with _silenced():
        import litert_torch
        import torch
        from litert_torch.quantize import pt2e_quantizer, quant_config
        from torchao.quantization.pt2e import quantize_pt2e

        logging.getLogger("absl").setLevel(logging.ERROR)
        args = (torch.zeros(input_shape),)
        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
        pm = torch.export.export(model.eval(), args).module()
        pm = quantize_pt2e.prepare_pt2e(pm, quantizer)
        with torch.no_grad():
            for i in range(0, len(representative), 1):
                pm(torch.from_numpy(representative[i:i + 1]))
        pm = quantize_pt2e.convert_pt2e(pm, fold_quantize=False)
        edge = litert_torch.convert(pm, args, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(out))
    return out


class TfliteExporter(Exporter):
    name = "tflite"
    requires = ("onnx",)

    def available(self) -> str | None:
        if importlib.util.find_spec("litert_torch") is None:
            return "litert-torch is not installed (pip install 'chipfit[tflite]')"
        return None

    def export(self, best: BestModel) -> list[Path]:
        data = best.dataset
        rng = np.random.default_rng(best.contract.search.seed)
        n = min(len(data.x_train), best.contract.search.calibration_samples)
        calib = best.preprocessor(data.x_train[rng.permutation(len(data.x_train))[:n]])
        out = best.dir / "model.tflite"
        try:
            convert_int8_tflite(best.torch_model(), best.input_shape(), calib, out)
        except Exception as exc:
            raise ExportError(f"TFLite int8 conversion failed: {type(exc).__name__}: {exc}") from exc
        return [out]


register_exporter(TfliteExporter())
