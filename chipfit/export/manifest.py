"""``manifest.json``: everything a device-side app needs to run the model exactly as chipfit did — first the
raw input contract (dtype, shape, layout, range and scaling of what the sensor gives, with an example) — and
the provenance of the figures (chipfit version, contract hash, seeds, data fingerprint)."""

from __future__ import annotations

import hashlib
import platform
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
from onnx import numpy_helper

from chipfit.errors import ExportError
from chipfit.export.base import Exporter, register_exporter

if TYPE_CHECKING:
    from chipfit.bestmodel import BestModel


def onnx_input_quantization(path: Path) -> dict[str, float] | None:
    """Scale and zero point of the int8 ONNX model's input QuantizeLinear, if any."""
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    first = m.graph.input[0].name
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] == first:
            scale, zp = inits.get(n.input[1]), inits.get(n.input[2]) if len(n.input) > 2 else None
            if scale is not None:
                zero = int(zp.reshape(-1)[0]) if zp is not None else 0
                return {"scale": float(scale.reshape(-1)[0]), "zero_point": zero}
    return None


def tflite_io_quantization(path: Path) -> dict[str, Any] | None:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    return {"input": {"dtype": str(i["dtype"].__name__), "shape": [int(s) for s in i["shape"]],
                      "scale": float(i["quantization"][0]), "zero_point": int(i["quantization"][1])},
            "output": {"dtype": str(o["dtype"].__name__), "shape": [int(s) for s in o["shape"]],
                       "scale": float(o["quantization"][0]), "zero_point": int(o["quantization"][1])}}


def drift_reference(best: BestModel, *, window: int = 64, false_alarm_rate: float = 0.01) -> Any:
    """Reference statistics of the training inputs and the int8 model's confidence, with a threshold
    calibrated on the clean validation split (see :mod:`chipfit.runtime.drift`)."""
    import numpy as np

    from chipfit.quantize.int8 import session
    from chipfit.runtime.drift import DriftReference

    data = best.dataset
    pre = best.preprocessor
    sess = session(best.dir / "model.int8.onnx")
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(best.contract.search.seed)
    train = data.x_train[rng.permutation(len(data.x_train))[:2000]]

    def confidence(x: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(x), 256):
            logits = sess.run(None, {name: pre(x[i:i + 256])})[0]
            e = np.exp(logits - logits.max(1, keepdims=True))
            out.append((e / e.sum(1, keepdims=True)).max(1))
        return np.concatenate(out)

    window = max(8, min(window, len(data.x_val) // 4))
    return DriftReference.fit(data.modality, train, data.x_val, window=window, false_alarm_rate=false_alarm_rate,
                              confidence_train=confidence(train), confidence_holdout=confidence(data.x_val),
                              sample_rate_hz=data.sample_rate_hz, seed=best.contract.search.seed)


class ManifestExporter(Exporter):
    name = "manifest"

    def export(self, best: BestModel) -> list[Path]:
        import chipfit
        from chipfit.runtime.manifest import InputContract, Manifest

        best_dir = best.dir
        report = best.report
        pre = best.preprocessor
        if pre.raw is None:  # a recipe written before the raw input was stated: the data source states it now
            pre = replace(pre, raw=best.dataset.raw)
        raw = pre.raw
        if raw is None:
            raise ExportError(f"{best.run_dir}: the data source does not state its raw input (dtype, range, "
                              "scaling), so the manifest cannot say what the Predictor takes; this is a chipfit bug.")
        files = {p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                 for p in sorted(best_dir.iterdir()) if p.suffix in (".onnx", ".tflite", ".c", ".h")}
        tfl = best_dir / "model.tflite"
        contract_text = (best.run_dir / "contract.yaml").read_text()
        t = best.target
        manifest = Manifest(
            name=best.name,
            labels=list(best.classes),
            input=InputContract(modality=pre.modality, **raw.to_dict()),
            preprocessing=pre.to_dict(),
            models={"onnx_fp32": "model.onnx", "onnx_int8": "model.int8.onnx",
                    "tflite_int8": "model.tflite" if tfl.exists() else None},
            quantization={"onnx_int8_input": onnx_input_quantization(best_dir / "model.int8.onnx"),
                          "tflite": tflite_io_quantization(tfl) if tfl.exists() else None},
            architecture=best.record.config,
            target={"name": t.name, "runtime": t.runtime, "core": t.core, "clock_mhz": t.clock_mhz},
            tensor_arena_bytes=best.record.predicted.get("arena_bytes"),
            files=files,
            provenance={
                "chipfit_version": chipfit.__version__,
                "contract_sha256": hashlib.sha256(contract_text.encode()).hexdigest(),
                "seed": best.contract.search.seed,
                "candidate_id": best.record.id,
                "data_fingerprint": report.dataset.fingerprint if report.dataset else None,
                "python": platform.python_version(),
            },
            report=report,
            drift=drift_reference(best).to_dict(),
        )
        return [manifest.save(best_dir / "manifest.json")]


register_exporter(ManifestExporter())
