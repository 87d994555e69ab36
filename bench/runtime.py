"""Predictor overhead vs a bare ONNX Runtime session, on a mid-size int8 model (ResNet-8, 32x32x3, 12.5 M MACs).

Three ways to classify one sample, interleaved in rounds so machine drift hits all alike; per round the
median of ``--runs`` calls, then the minimum over rounds (the drift-stable estimator here):

* bare: ``session.run`` on an already preprocessed input;
* Predictor, prepared input: ``Predictor.logits_prepared`` (the wrapper alone);
* Predictor, raw image: ``Predictor.predict`` (the wrapper plus the shipped preprocessing: normalise, layout).

Run: ``python bench/runtime.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root first (bench/profile.py shadows stdlib)

import argparse
import statistics
import tempfile
import time

import numpy as np
import onnxruntime as ort

from bench._report import table, write_section
from chipfit.contract.schema import InputSpec
from chipfit.quantize.int8 import export_onnx, quantize_int8
from chipfit.runreport import RunReport
from chipfit.runtime import Predictor
from chipfit.runtime.manifest import InputContract, Manifest, ModelFiles, Provenance, TargetSummary
from chipfit.runtime.preprocess import Preprocessor
from chipfit.space import create_space, reference_config


def build(tmp: Path) -> tuple[Path, Preprocessor, np.ndarray]:
    space = create_space(InputSpec(modality="image", shape=[32, 32, 3]), 10)
    cfg = reference_config("resnet8")
    rng = np.random.default_rng(0)
    raw = rng.random((64, 32, 32, 3), dtype=np.float32)
    pre = Preprocessor.fit(raw, "image", space.model_input_shape(cfg))
    fp = export_onnx(space.build(cfg).eval(), space.model_input_shape(cfg), tmp / "model.onnx")
    quantize_int8(fp, tmp / "model.int8.onnx", pre(raw))
    # a synthetic manifest (no run behind it: this bench times the Predictor, not a model's accuracy)
    report = RunReport(contract="bench-runtime", target="host", runtime="onnxruntime", verdict="FAIL",
                       reason="synthetic manifest of bench/runtime.py (no run)", classes=[str(i) for i in range(10)])
    Manifest(name="bench-runtime", labels=report.classes,
             input=InputContract(modality="image", shape=[32, 32, 3], layout="HWC", dtype="float32",
                                 range=(0.0, 1.0), range_kind="observed", scale=1.0, offset=0.0),
             preprocessing=pre.to_dict(), models=ModelFiles(onnx_fp32="model.onnx", onnx_int8="model.int8.onnx"),
             quantization={}, architecture=cfg.to_dict(),
             target=TargetSummary(name="host", runtime="onnxruntime", core="x86-64"), tensor_arena_bytes=None,
             files={}, provenance=Provenance(chipfit_version="bench", contract_sha256="-", seed=0, candidate_id=0,
                                             data_fingerprint=None, python="-"),
             report=report).save(tmp / "manifest.json")
    return tmp, pre, raw


def timed(fn, runs: int) -> float:
    ts = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        fn()
        ts.append(time.perf_counter_ns() - t)
    return statistics.median(ts) / 1e3  # microseconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp, pre, raw = build(Path(d))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(tmp / "model.int8.onnx"), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        pred = Predictor(tmp, threads=1)
        x1 = pre(raw[:1])
        sample = raw[0]
        methods = {"bare ONNX Runtime session.run (prepared input)": lambda: sess.run(None, {name: x1}),
                   "Predictor.logits_prepared (prepared input)": lambda: pred.logits_prepared(x1),
                   "Predictor.predict (raw image, incl. preprocessing)": lambda: pred.predict(sample)}
        for fn in methods.values():  # warm-up
            timed(fn, 50)
        per_round: dict[str, list[float]] = {k: [] for k in methods}
        for _ in range(args.rounds):
            for k, fn in methods.items():
                per_round[k].append(timed(fn, args.runs))
    base = min(per_round[next(iter(methods))])
    rows = []
    for k, v in per_round.items():
        rows.append([k, f"{min(v):.1f}", f"{statistics.median(v):.1f}", f"{min(v) / base:.3f}",
                     f"{(min(v) / base - 1) * 100:+.1f}%"])
    body = table(["call (batch 1, 1 thread)", "min over rounds of median us", "median of medians us",
                  "ratio to bare", "overhead"], rows)
    body += (f"\n\nint8 QDQ ResNet-8 (MLPerf Tiny IC shape, 12.5 M MACs), {args.rounds} interleaved rounds x "
             f"{args.runs} calls; estimator: minimum over rounds of each round's median. Goal: Predictor "
             "overhead <= 5 % over a bare session.\n")
    print(body)
    write_section("Predictor overhead (bench/runtime.py)", body)


if __name__ == "__main__":
    main()
