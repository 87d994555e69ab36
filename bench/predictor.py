"""How well chipfit predicts host latency (ONNX Runtime, int8 QDQ, 1 thread) of networks it has not seen.

* Calibration set: the probe networks ``chipfit calibrate --target host`` uses (50 by default, seed 1000): the
  50 that cover a draw of 400 (k-means over each network's cost composition); also 50 random ones for comparison.
* Test set: >= 100 other networks drawn at random from the same search spaces (seed 2000), minus any whose
  architecture also appears in the calibration set.
* Every network of both sets is measured twice, interleaved in one process (minimum over 5 rounds x 20
  runs); the first pass judges the predictor, the second pass says how repeatable the measurement is.
* Predictors compared on the test set: chipfit calibrated (the cost model with the fitted calibration, via
  ``chipfit.profile``), a MACs-proportional baseline (a x MACs) and a MACs-affine one (a x MACs + b),
  both fitted on the same calibration measurements, and chipfit's uncalibrated analytical host model.

Run: ``python bench/predictor.py [--test 120] [--calibration 50]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root first (bench/profile.py shadows stdlib)

import argparse
import tempfile
import time

import numpy as np
from scipy.optimize import nnls

from bench._report import table, write_section
from chipfit import create_target, profile
from chipfit.cost.calibration import fit_calibration
from chipfit.cost.model import CostModel
from chipfit.measure.calibrate import CALIBRATION_SEED, profile_probes
from chipfit.measure.local import OrtRuntime
from chipfit.measure.probes import make_probes

TEST_SEED = 2000


def stats(pred: np.ndarray, meas: np.ndarray) -> tuple[float, float, float]:
    rel = np.abs(pred / meas - 1)
    return float(np.mean(rel <= 0.10)), float(np.mean(rel <= 0.20)), float(np.median(rel))


def row(name: str, pred: np.ndarray, meas: np.ndarray, ncal: str) -> list[str]:
    w10, w20, med = stats(pred, meas)
    return [name, f"{w10:.1%}", f"{w20:.1%}", f"{med:.1%}", ncal]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calibration", type=int, default=50)
    ap.add_argument("--sizes", default="50,100,200",
                    help="calibration-set sizes to compare (each its own covering draw)")
    ap.add_argument("--test", type=int, default=120)
    ap.add_argument("--seeds", type=int, default=5, help="calibration draws to compare (covering and random)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    t0 = time.time()
    nc = args.calibration
    with tempfile.TemporaryDirectory() as d:
        sizes = sorted({nc, *(int(x) for x in args.sizes.split(",") if x)})
        # what `chipfit calibrate --probes N` builds: N probes covering a larger draw (design="cover"); the
        # default seed first, then other seeds to show how much the draw matters; random picks for comparison
        sets: dict[str, list] = {f"cover{n}": make_probes(n, Path(d) / f"cover{n}", seed=CALIBRATION_SEED,
                                                          design="cover") for n in sizes}
        for k in range(1, args.seeds):
            sets[f"cover{nc}-s{k}"] = make_probes(nc, Path(d) / f"cover-s{k}", seed=CALIBRATION_SEED + k,
                                                  design="cover")
        for k in range(args.seeds):
            sets[f"random{nc}-s{k}"] = make_probes(nc, Path(d) / f"random-s{k}", seed=CALIBRATION_SEED + k)
        seen = {(p.space, p.config.key) for ps in sets.values() for p in ps}
        test = [p for p in make_probes(args.test + 60, Path(d) / "test", seed=TEST_SEED)
                if (p.space, p.config.key) not in seen][:args.test]
        groups = {**sets, "test": test}
        paths = [p.path for g in groups.values() for p in g]
        rt = OrtRuntime(threads=1)
        passes = [rt.measure_many(paths, rounds=args.rounds, runs=args.runs) for _ in range(2)]
        a = np.array([m.latency_ms for m in passes[0]])
        b = np.array([m.latency_ms for m in passes[1]])
        y: dict[str, np.ndarray] = {}
        i = 0
        for key, g in groups.items():
            y[key] = a[i:i + len(g)]
            i += len(g)
        y_test = y["test"]
        cal, y_cal = sets[f"cover{nc}"], y[f"cover{nc}"]
        profiles = {key: profile_probes(rt, g) for key, g in sets.items()}  # per-node times, as calibrate does
        calib = fit_calibration([p.graph for p in cal], y_cal, target="host", runtime="onnxruntime", dtype="int8",
                                device=passes[0][0].device, estimator="min (interleaved)",
                                runtime_version=passes[0][0].runtime, node_obs=profiles[f"cover{nc}"])
        host = create_target("host")
        cm = CostModel(calibrations=[calib], auto_calibration=False)
        pred = np.array([profile(p.path, target=host, cost_model=cm).cost.latency_ms for p in test])
        raw = np.array([profile(p.path, target=host, cost_model=CostModel(auto_calibration=False)).cost.latency_ms
                        for p in test])

        def predict(key: str, nodes: bool = True) -> np.ndarray:
            c = fit_calibration([p.graph for p in sets[key]], y[key], target="host", runtime="onnxruntime",
                                dtype="int8", device="d", estimator="min (interleaved)",
                                node_obs=profiles[key] if nodes else None)
            return np.array([c.predict_ms(p.graph) for p in test])

        def key(kind: str, k: int) -> str:
            return f"{kind}{nc}" + (f"-s{k}" if k or kind == "random" else "")

        spread = {(kind, nodes): [stats(predict(key(kind, k), nodes), y_test) for k in range(args.seeds)]
                  for kind in ("cover", "random") for nodes in (True, False)}
        larger = [(n, predict(f"cover{n}")) for n in sizes if n != nc]
    macs_cal = np.array([p.graph.macs for p in cal], float)
    macs_test = np.array([p.graph.macs for p in test], float)
    k, _ = nnls((macs_cal / y_cal)[:, None], np.ones(nc))
    kb, _ = nnls(np.stack([macs_cal, np.ones(nc)], 1) / y_cal[:, None], np.ones(nc))
    rep = np.abs(b / a - 1)
    rows = [
        row(f"chipfit, calibrated (chipfit calibrate --probes {nc}, then chipfit profile)", pred, y_test, str(nc)),
        row("baseline: a x MACs", k[0] * macs_test, y_test, str(nc)),
        row("baseline: a x MACs + b", kb[0] * macs_test + kb[1], y_test, str(nc)),
        row("chipfit, uncalibrated (measured host peaks x est. efficiency)", raw, y_test, "0"),
        ["measurement repeatability (pass 2 vs pass 1, all networks)", f"{np.mean(rep <= .10):.1%}",
         f"{np.mean(rep <= .20):.1%}", f"{np.median(rep):.1%}", "-"],
    ]
    for (kind, nodes), w in spread.items():
        w = np.array(w)
        label = ("covering" if kind == "cover" else "random") + " probes" + (" with per-node profiles" if nodes else
                                                                            ", totals only")
        rows.append([f"chipfit, {nc} {label}, {args.seeds} draws: mean (min-max)",
                     f"{w[:, 0].mean():.1%} ({w[:, 0].min():.1%}-{w[:, 0].max():.1%})",
                     f"{w[:, 1].mean():.1%} ({w[:, 1].min():.1%}-{w[:, 1].max():.1%})",
                     f"{w[:, 2].mean():.1%}", str(nc)])
    rows += [row(f"chipfit, calibrated on {n} covering probes with per-node profiles", p_n, y_test, str(n))
             for n, p_n in larger]
    body = table(["predictor (test set)", "within ±10%", "within ±20%", "median abs error",
                  "calibration measurements"], rows)
    lo, hi = np.percentile(y_test, [0, 100])
    spaces = sorted({p.space for p in test})
    body += (f"\n\n{len(test)} test networks (latency {lo * 1e3:.0f}-{hi * 1e3:.0f} us; MACs "
             f"{macs_test.min():,.0f}-{macs_test.max():,.0f}) from the {', '.join(spaces)} search spaces, none "
             f"used for calibration; calibration probes cover a larger draw (seed {CALIBRATION_SEED}) as "
             f"`chipfit calibrate` does (the first row uses its default seed); the draws rows repeat that with "
             f"seeds {CALIBRATION_SEED}-{CALIBRATION_SEED + args.seeds - 1}, and with the first {nc} of each draw "
             f"taken at random instead. "
             f"Measured: {passes[0][0].runtime} on "
             f"{passes[0][0].device}; estimator: {passes[0][0].estimator.split(' interleaved')[0]}, all "
             f"{len(paths)} networks interleaved, two passes. Predicted: int8 QDQ ONNX files read by "
             f"`chipfit profile`. The feature set and its padding widths were chosen on separate exploratory "
             f"draws (seeds 7 and 8) and a timing study of 360 single-layer models, not on these sets. "
             f"Calibration in-sample: median error "
             f"{calib.fit.median_abs_error:.1%}, {calib.fit.within_10:.0%} within ±10%. "
             f"Goal: >= 95% within ±10% with <= 50 calibration measurements. Wall time {time.time() - t0:.0f} s.\n")
    print(body)
    write_section("Latency predictor vs measurement (bench/predictor.py)", body)


if __name__ == "__main__":
    main()
