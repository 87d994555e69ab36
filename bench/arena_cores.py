"""Predicted vs TFLM's arena per emulated core: the firmware (TFLM + CMSIS-NN, GCC) under QEMU reports
``arena_used_bytes()``; chipfit predicts it with the core's CMSIS-NN code path (Helium/MVE, DSP, plain C) and, for
comparison, with the DSP path on every core (what it did before the code path was core-aware).

Models: the four MLPerf Tiny int8 models and ``--exports N`` litert-torch int8 exports of the search spaces (seeds
100.., as ``bench/tflm.py``). The first firmware build per core and op set takes minutes; later ones reuse the
cached objects. Prints the table; ``--write`` puts it into BENCHMARKS.md.

    .venv/bin/python bench/arena_cores.py --cores cortex-m55,cortex-m4,cortex-m3 --exports 6
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tflm import MLPERF, exports
from chipfit.cost.arena import cmsis_isa, tflm_arena
from chipfit.logging import get_logger

ROOT = Path(__file__).resolve().parents[1]
_log = get_logger("bench.arena_cores")


def main() -> None:
    from chipfit.measure.modelfile import inspect_model
    from chipfit.measure.qemu import QemuRuntime

    ap = argparse.ArgumentParser()
    ap.add_argument("--cores", default="cortex-m55,cortex-m4")
    ap.add_argument("--exports", type=int, default=6)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mlperf_tiny_models")
    ap.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args()
    cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    lines = ["| model | core (CMSIS-NN path) | TFLM arena (QEMU) | chipfit, core's path | chipfit, DSP path (before) |",
             "|---|---|---:|---:|---:|"]
    exact = total = 0
    with tempfile.TemporaryDirectory() as d:
        models = [(k, args.data / v) for k, v in MLPERF.items() if (args.data / v).is_file()]
        models += exports(args.exports, Path(d))
        for core in cores:
            rt, isa = QemuRuntime(core), cmsis_isa(core)
            for name, path in models:
                mf = inspect_model(path)
                measured = rt.measure(mf, mf.random_inputs(7)).arena_bytes
                now = tflm_arena(path, kernels="cmsis-nn", isa=isa).total
                before = tflm_arena(path, kernels="cmsis-nn", isa="dsp").total
                exact += now == measured
                total += 1
                lines.append(f"| {name} | {core} ({isa}) | {measured:,} | {now:,} ({now - measured:+,}) | "
                             f"{before:,} ({before - measured:+,}) |")
                _log.info("%s on %s: TFLM %s, chipfit %s", name, core, measured, now)
    body = (f"`bench/arena_cores.py --cores {args.cores} --exports {args.exports}`: {exact} of {total} predicted "
            "byte for byte.\n\n" + "\n".join(lines) + "\n")
    sys.stdout.write(body)
    if args.write:
        from bench._report import write_section

        write_section("TFLM arena per core: predicted vs the firmware on QEMU (bench/arena_cores.py)", body)


if __name__ == "__main__":
    main()
