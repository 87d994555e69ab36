"""Predicted vs TFLM arena (planned and total) per model, and TFLM's evaluation throughput on this machine.

Models: the four MLPerf Tiny int8 models (../shared/data/mlperf_tiny_models) and ``--exports N`` random int8
exports of chipfit's search spaces (litert-torch, about 3 s each; seeds 100.., not those of the tests). Prints the
table; ``--write`` puts it into BENCHMARKS.md with the machine, date and commit.

    .venv/bin/python bench/tflm.py --exports 6 --write
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

# bench/profile.py would shadow the standard library's profile module (torch imports cProfile)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench._report from the repository root

import numpy as np

from chipfit.cost.arena import tflm_arena
from chipfit.measure.tflm import TFLM_VERSION, interpreter, measure_arena
from chipfit.targets.machine import host_device

ROOT = Path(__file__).resolve().parents[1]
MLPERF = {"ic ResNet-8": "ic/pretrainedResnet_quant.tflite", "kws DS-CNN": "kws/kws_ref_model.tflite",
          "vww MobileNetV1-0.25": "vww/vww_96_int8.tflite", "ad autoencoder": "ad/ad01_int8.tflite"}


def exports(n: int, out: Path) -> list[tuple[str, Path]]:
    from chipfit.contract.schema import InputSpec
    from chipfit.export.tflite_export import convert_int8_tflite
    from chipfit.space import ArchConfig, create_space

    specs = [InputSpec(modality="image", shape=[32, 32, 3]), InputSpec(modality="audio", shape=[49, 10]),
             InputSpec(modality="series", shape=[64, 3])]
    paths = []
    for i in range(n):
        spec = specs[i % 3]
        space = create_space(spec, 4)
        rng = random.Random(100 + i)
        fam = rng.choice(list(space.families))
        cfg = ArchConfig(fam, {k: rng.choice(v) for k, v in space.families[fam].items()})
        shape = space.model_input_shape(cfg)
        calib = np.random.default_rng(i).standard_normal((4, *shape[1:])).astype(np.float32)
        p = convert_int8_tflite(space.build(cfg), shape, calib, out / f"{spec.modality}_{fam}_{i}.tflite")
        paths.append((f"export {spec.modality} {fam}", p))
    return paths


def throughput(path: Path, seconds: float = 1.0) -> float:
    it = interpreter(path)
    d = it.get_input_details(0)
    it.set_input(np.zeros(tuple(d["shape"]), dtype=d["dtype"]), 0)
    it.invoke()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        it.invoke()
        n += 1
    return n / (time.perf_counter() - t0)


NOTES = """\
*TFLM planned / tail x86-64*: measured by TFLM's `RecordingMicroAllocator` (`print_allocations`) in the x86-64
wheel with reference kernels. *chipfit planned / tail*: `chipfit.cost.arena.tflm_arena(abi="x86_64",
recording=True)`, predicted from the `.tflite` alone. *TFLM total 32-bit*: that x86-64 measurement with every
struct's 64-bit size swapped for its 32-bit Arm size (sizes compiled from the pinned headers,
`bench/tflm_struct_sizes.cc`) and, for CMSIS-NN, chipfit's own model of CMSIS-NN's scratch buffers and op data;
*chipfit total 32-bit*: predicted. Error: the larger of the two. Inferences/s: TFLM's reference kernels here (batch 1,
one thread, 1 s of back-to-back `invoke()`): evaluation throughput, not MCU speed.

What is not independent evidence: the 32-bit columns share chipfit's struct sizes and CMSIS-NN scratch model on
both sides, so their agreement shows the conversion is applied consistently, not that it is right; and the sizes of
the fully-connected op data were fitted to the `ad` model's allocations in this wheel, so `ad`'s tail matches by
construction. The independent 32-bit check is the firmware on emulated cores (the Virtual board section:
`arena_used_bytes()` of TFLM + CMSIS-NN built for Cortex-M4/M33: kws 22,820, ic 54,996, vww 100,708, ad 2,580,
equal to chipfit's CMSIS-NN predictions in this table). The planned arena (GreedyMemoryPlanner) has no fitted
constant: its byte-for-byte match is evidence.
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exports", type=int, default=6)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mlperf_tiny_models")
    ap.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args()
    models = [(k, args.data / v) for k, v in MLPERF.items() if (args.data / v).is_file()]
    lines = ["| model | TFLM planned (x86-64) | chipfit planned | TFLM tail x86-64 | chipfit tail x86-64 | "
             "TFLM total 32-bit ref / CMSIS-NN | chipfit total 32-bit ref / CMSIS-NN | error | inferences/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    worst = 0.0
    with tempfile.TemporaryDirectory() as d:
        models += exports(args.exports, Path(d))
        for name, p in models:
            mr, mc = measure_arena(p, kernels="reference"), measure_arena(p, kernels="cmsis-nn")
            x86 = tflm_arena(p, abi="x86_64", recording=True)
            ar, ac = tflm_arena(p, kernels="reference"), tflm_arena(p, kernels="cmsis-nn")
            err = max(abs(ar.total / mr.total_arm32 - 1), abs(ac.total / mc.total_arm32 - 1))
            worst = max(worst, err)
            lines.append(f"| {name} | {mr.planned:,} | {x86.planned:,} | {mr.persistent:,} | {x86.persistent:,} | "
                         f"{mr.total_arm32:,} / {mc.total_arm32:,} | {ar.total:,} / {ac.total:,} | "
                         f"{100 * err:.2f}% | {throughput(p):,.0f} |")
    body = (f"`bench/tflm.py --exports {args.exports}`, tflite-micro {TFLM_VERSION}, {host_device()}.\n\n"
            + "\n".join(lines) + f"\n\nWorst 32-bit total error {100 * worst:.2f}%.\n\n" + NOTES)
    print(body)
    if args.write:
        from bench._report import write_section

        write_section("TFLM arena: predicted vs TFLM's allocator, and TFLM throughput (bench/tflm.py)", body)


if __name__ == "__main__":
    main()
