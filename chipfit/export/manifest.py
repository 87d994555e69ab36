"""``manifest.json``: everything a device-side app needs to run the model exactly as chipfit did, and the
provenance of the figures (chipfit version, contract hash, seeds, data fingerprint)."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
from onnx import numpy_helper

from chipfit.export.base import Exporter, register_exporter

if TYPE_CHECKING:
    from chipfit.run import Run

MANIFEST_VERSION = 1


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


def drift_reference(run: Run, *, window: int = 64, false_alarm_rate: float = 0.01) -> Any:
    """Reference statistics of the training inputs and the int8 model's confidence, with a threshold
    calibrated on the clean validation split (see :mod:`chipfit.runtime.drift`)."""
    import numpy as np

    from chipfit.runtime.preprocess import Preprocessor
    from chipfit.quantize.int8 import session
    from chipfit.runtime.drift import DriftReference

    data = run.dataset
    pre = Preprocessor.from_dict(json.loads((run.dir / "best" / "preprocess.json").read_text()))
    sess = session(run.dir / "best" / "model.int8.onnx")
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(run.contract.search.seed)
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
                              sample_rate_hz=data.sample_rate_hz, seed=run.contract.search.seed)


class ManifestExporter(Exporter):
    name = "manifest"

    def export(self, run: Run) -> list[Path]:
        import chipfit

        best_dir = run.dir / "best"
        report = json.loads((run.dir / "report.json").read_text()) if (run.dir / "report.json").exists() else {}
        best = run.best
        files = {p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                 for p in sorted(best_dir.iterdir()) if p.suffix in (".onnx", ".tflite", ".c", ".h")}
        tfl = best_dir / "model.tflite"
        contract_text = (run.dir / "contract.yaml").read_text()
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "name": run.contract.name,
            "labels": list(report.get("dataset", {}).get("classes", [])),
            "input": {"raw": run.contract.input_spec().model_dump(mode="json")},
            "preprocessing": json.loads((best_dir / "preprocess.json").read_text()),
            "models": {"onnx_fp32": "model.onnx", "onnx_int8": "model.int8.onnx",
                       "tflite_int8": "model.tflite" if tfl.exists() else None},
            "quantization": {"onnx_int8_input": onnx_input_quantization(best_dir / "model.int8.onnx"),
                             "tflite": tflite_io_quantization(tfl) if tfl.exists() else None},
            "architecture": best.config,
            "target": {"name": run.target.name, "runtime": run.target.runtime, "core": run.target.core,
                       "clock_mhz": run.target.clock_mhz},
            "tensor_arena_bytes": best.predicted.get("arena_bytes"),
            "budgets": report.get("budgets", []),
            "verdict": report.get("verdict"),
            "achieved": {"test_accuracy_int8": report.get("test_accuracy_int8"),
                         "test_accuracy_float": report.get("test_accuracy_float"),
                         "predicted": best.predicted},
            "files": files,
            "provenance": {
                "chipfit_version": chipfit.__version__,
                "contract_sha256": hashlib.sha256(contract_text.encode()).hexdigest(),
                "seed": run.contract.search.seed,
                "candidate_id": best.id,
                "data_fingerprint": report.get("dataset", {}).get("fingerprint"),
                "python": platform.python_version(),
            },
        }
        manifest["drift"] = drift_reference(run).to_dict()
        path = best_dir / "manifest.json"
        path.write_text(json.dumps(manifest, indent=2, default=str))
        return [path]


register_exporter(ManifestExporter())
