"""Cost-model throughput: estimates per second from torch modules and from ONNX / TFLite files, one core.

The search costs every sampled candidate before training, thousands of times per run; the goal is
>= 200 estimates/s from torch modules on one core. Run: ``python bench/profile.py [--n 300]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as `python bench/<name>.py`: put the repository root first on sys.path, not bench/ (whose profile.py
# would shadow the standard library's profile module)
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import torch

from bench._report import table, write_section
from chipfit import create_target
from chipfit.contract.schema import InputSpec
from chipfit.cost import CostModel
from chipfit.graph import from_onnx, from_tflite, from_torch

SPECS = {
    "image 32x32x3": InputSpec(modality="image", shape=[32, 32, 3]),
    "audio 1 s @ 16 kHz (MFCC)": InputSpec(modality="audio", sample_rate_hz=16000, duration_s=1.0),
    "series 128x9": InputSpec(modality="series", shape=[128, 9]),
}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlperf_tiny_models"


def rate(fn, items, repeats: int = 3) -> tuple[float, float]:
    """Best-of-``repeats`` items per second (the min wall time is the drift-stable estimator here)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for it in items:
            fn(it)
        times.append(time.perf_counter() - t)
    return len(items) / min(times), len(items) / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="candidates per modality")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("torch").setLevel(logging.ERROR)
    from chipfit.space import create_space

    target = create_target("stm32h743")
    cm = CostModel()
    rows = []
    all_modules = []
    for label, spec in SPECS.items():
        space = create_space(spec, 10)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        configs = [space.sample(study.ask()) for _ in range(args.n)]
        mods = [(space.build(c).eval(), space.model_input_shape(c)) for c in configs]
        all_modules += mods
        graphs = [from_torch(m, s) for m, s in mods]
        best, med = rate(lambda ms: cm.estimate(from_torch(ms[0], ms[1]), target), mods)
        best_e, med_e = rate(lambda g: cm.estimate(g, target), graphs)

        def from_config(cfg, sp=space):
            cand = sp.candidate(cfg)
            return cm.estimate(cand.graph, target, frontend_ops=cand.frontend_ops,
                               frontend_ram_bytes=cand.frontend_ram_bytes)

        best_c, _ = rate(from_config, configs, repeats=1)
        nodes = statistics.median(len(g.nodes) for g in graphs)
        rows.append([label, str(args.n), f"{nodes:.0f}", f"**{best:.0f}** ({med:.0f})", f"{best_c:.0f}",
                     f"{best_e:.0f} ({med_e:.0f})"])
    with tempfile.TemporaryDirectory() as tmp:
        onnx_files = []
        for i, (m, s) in enumerate(all_modules[:: max(1, len(all_modules) // 60)]):
            p = Path(tmp) / f"m{i}.onnx"
            torch.onnx.export(m, (torch.zeros(s),), str(p), dynamo=False)
            onnx_files.append(p)
        best_o, med_o = rate(lambda p: cm.estimate(from_onnx(p), target), onnx_files)
        rows.append(["ONNX files (same spaces)", str(len(onnx_files)), "-", "-", "-",
                     f"file: **{best_o:.0f}** ({med_o:.0f})"])
    if SHARED.is_dir():
        files = sorted(SHARED.glob("*/*.tflite"))
        best_t, med_t = rate(lambda p: cm.estimate(from_tflite(p), target), files * 5)
        rows.append(["MLPerf Tiny .tflite files", str(len(files) * 5), "-", "-", "-",
                     f"file: **{best_t:.0f}** ({med_t:.0f})"])
    body = table(
        ["input", "candidates", "median nodes", "module -> estimate /s", "config -> module -> estimate /s",
         "graph -> estimate /s (or file -> estimate)"], rows)
    body += ("\n\nOne thread (`torch.set_num_threads(1)`), target stm32h743. Each figure is the best of 3 passes "
             "(median of 3 in parentheses); 'module -> estimate' traces an existing `torch.nn.Module` into an "
             "OpGraph in memory (no file) and costs it; 'config -> module' also builds the module from a sampled "
             "ArchConfig (1 pass). Goal: >= 200 estimates/s from torch modules.\n")
    print(body)
    write_section("Cost-model throughput (bench/profile.py)", body)


if __name__ == "__main__":
    main()
