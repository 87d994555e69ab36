"""The board farm without boards: the MLPerf Tiny reference models as TFLM + CMSIS-NN firmware on emulated
Cortex-M cores, and how well their instruction counts predict the published latencies of real boards.

Part 1, per reference model and emulated core: executed instructions of ``Invoke()`` (QEMU ``-icount``),
instructions per MAC, TFLM's arena, and the time to build the firmware (objects cached per core; ``--cold``
also times a first build from an empty cache) and to measure it.

Part 2, on the published rows (``../shared/data/mlperf_tiny_published/results.csv``, Cortex-M4 and M7 boards,
the four benchmarks): two predictors of the same form, ``cycles = k x feature``, one with the emulated
instruction count of the row's core as the feature (k: cycles per instruction), one with the model's MACs
(k: cycles per MAC, the analytical predictor's shape), fitted identically:

* leave-one-board-out: every row of a board is predicted with the median k of the *other* boards' rows of the
  same core and the same software stack and version (else the same stack family, else the same stack family
  on the other core, else the same core);
* one measurement per system (board x stack x version): each benchmark is predicted with the k of the same
  system's other benchmarks, as a user calibrating a board with one run of one model would.

Part 3, the cost model's instruction path (``chipfit.cost.instructions``: emulated instructions per layer x the
board's cycles per instruction) beside the fitted paths of issue 15 and the analytical path, on the published
rows whose stack runs CMSIS-NN's kernels (the firmware's): leave one board out and leave one network out.

    .venv/bin/python bench/virtual_board.py                 # print the tables
    .venv/bin/python bench/virtual_board.py --cold --write  # also time a cold build; write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chipfit.firmware.build import build_firmware
from chipfit.firmware.cores import get_core
from chipfit.firmware.run import run_qemu
from chipfit.graph import from_tflite
from chipfit.measure.modelfile import inspect_model
from chipfit.measure.qemu import input_bytes

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CHIPFIT_SHARED_DATA") or ROOT.parent / "shared" / "data")
MODELS = {"kws": "kws/kws_ref_model.tflite", "ic": "ic/pretrainedResnet_quant.tflite",
          "vww": "vww/vww_96_int8.tflite", "ad": "ad/ad01_int8.tflite"}
PUBLISHED_CORES = {"Cortex-M4": "cortex-m4", "Cortex-M7": "cortex-m7"}


def emulate(cores: list[str], cold: bool) -> tuple[dict[tuple[str, str], dict], dict[str, float]]:
    """Instructions etc. per (core, model); and per core, the seconds of a first build from an empty cache."""
    out: dict[tuple[str, str], dict] = {}
    cold_s: dict[str, float] = {}
    for core in cores:
        if cold:
            saved = os.environ.get("CHIPFIT_FIRMWARE_CACHE")
            with tempfile.TemporaryDirectory(prefix="chipfit-cold-") as tmp:
                os.environ["CHIPFIT_FIRMWARE_CACHE"] = tmp
                t0 = time.perf_counter()
                build_firmware(SHARED / "mlperf_tiny_models" / MODELS["kws"], core)
                cold_s[core] = time.perf_counter() - t0
            if saved is None:
                os.environ.pop("CHIPFIT_FIRMWARE_CACHE")
            else:
                os.environ["CHIPFIT_FIRMWARE_CACHE"] = saved
        for name, rel in MODELS.items():
            path = SHARED / "mlperf_tiny_models" / rel
            mf = inspect_model(path)
            t0 = time.perf_counter()
            fw = build_firmware(path, core)
            build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            r = run_qemu(fw.elf, get_core(core), input_bytes(mf, mf.random_inputs(0)))
            run_s = time.perf_counter() - t0
            macs = from_tflite(path).macs
            out[core, name] = {"instructions": r.instructions, "macs": macs, "arena": r.arena_bytes,
                               "build_s": build_s, "compiled": fw.compiled, "run_s": run_s,
                               "qemu_wall_s": r.wall_s}
    return out, cold_s


def family(stack: str) -> str:
    s = stack.lower()
    for key, fam in (("x-cube-ai", "X-CUBE-AI"), ("plumerai", "Plumerai"), ("hale", "Bosch HALE"),
                     ("onnc", "ONNC + CMSIS"), ("tensorflow lite", "TFLM + CMSIS-NN")):
        if key in s:
            return fam
    if "microtvm" in s:
        return "microTVM + CMSIS-NN" if "+ cmsis-nn" in s else "microTVM native"
    return stack


def published() -> list[dict]:
    rows = []
    with open(SHARED / "mlperf_tiny_published" / "results.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["core"] in PUBLISHED_CORES and r["benchmark"] in MODELS and r["latency_ms"]:
                rows.append({"board": r["board_normalized"], "core": PUBLISHED_CORES[r["core"]],
                             "stack": r["software_stack"], "family": family(r["software_stack"]),
                             "round": r["round"], "bench": r["benchmark"], "clock": float(r["clock_mhz"]),
                             "cycles": float(r["latency_ms"]) * float(r["clock_mhz"]) * 1e3})
    return rows


def lobo(rows: list[dict], feat: dict[tuple[str, str], float]) -> tuple[list[float], dict[str, int]]:
    errs, paths = [], defaultdict(int)
    for r in rows:
        others = [q for q in rows if q["board"] != r["board"]]
        candidates = (("same core, same stack and version", [q for q in others if q["core"] == r["core"]
                                                             and q["stack"] == r["stack"]]),
                      ("same core, same stack family", [q for q in others if q["core"] == r["core"]
                                                        and q["family"] == r["family"]]),
                      ("same stack, other core", [q for q in others if q["family"] == r["family"]]),
                      ("same core, other stacks", [q for q in others if q["core"] == r["core"]]))
        path, pool = next((c for c in candidates if c[1]), candidates[-1])
        k = statistics.median(q["cycles"] / feat[q["core"], q["bench"]] for q in pool)
        errs.append(k * feat[r["core"], r["bench"]] / r["cycles"] - 1)
        paths[path] += 1
    return errs, dict(paths)


def one_per_system(rows: list[dict], feat: dict[tuple[str, str], float]) -> list[float]:
    systems: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        systems[r["board"], r["stack"], r["round"], r["clock"]].append(r)
    errs = []
    for group in systems.values():
        for r in group:
            pool = [q for q in group if q["bench"] != r["bench"]]
            if not pool:
                continue
            k = statistics.median(q["cycles"] / feat[q["core"], q["bench"]] for q in pool)
            errs.append(k * feat[r["core"], r["bench"]] / r["cycles"] - 1)
    return errs


def _stats(errs: list[float]) -> str:
    a = sorted(abs(e) for e in errs)
    within = sum(e <= 0.10 for e in a) / len(a)
    return f"{statistics.median(a):.1%} | {sum(a) / len(a):.1%} | {a[-1]:.0%} | {within:.0%}"


def tables(cores: list[str], cold: bool) -> str:
    em, cold_s = emulate(cores, cold)
    lines = ["Emulated on QEMU (`-icount shift=0`), TFLM + CMSIS-NN at the pinned commits, `-O2`, GCC "
             "12.2; instructions of one `Invoke()` on a seeded random input (measured); MACs from chipfit's "
             "graph reader; build: seconds to build the firmware with the core's objects cached (0.0: the image "
             "itself was cached); measure: one QEMU run, wall clock.", "",
             "| core | model | instructions | MACs | instructions / MAC | arena (B) | build (s) | measure (s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for (core, name), d in em.items():
        lines.append(f"| {core} | {name} | {d['instructions']:,} | {d['macs']:,} | "
                     f"{d['instructions'] / d['macs']:.2f} | {d['arena']:,} | {d['build_s']:.1f} | "
                     f"{d['run_s']:.2f} |")
    if cold_s:
        lines += ["", "First build of a core from an empty cache (TFLM core, the kws kernels, CMSIS-NN, 2 jobs): "
                  + ", ".join(f"{c} {s:.0f} s" for c, s in cold_s.items())]
    rows = [r for r in published() if (r["core"], r["bench"]) in em]
    instr = {k: float(v["instructions"]) for k, v in em.items()}
    macs = {k: float(v["macs"]) for k, v in em.items()}
    cpi = defaultdict(dict)
    for r in rows:
        cpi[r["board"], r["family"], r["round"], r["clock"]][r["bench"]] = r["cycles"] / instr[r["core"], r["bench"]]
    lines += ["", "Cycles per emulated instruction, per published system (board, stack family, round, clock MHz):",
              "", "| system | kws | ic | vww | ad |", "|---|---:|---:|---:|---:|"]
    for key, d in sorted(cpi.items()):
        lines.append(f"| {key[0]}, {key[1]}, {key[2]}, {key[3]:g} | "
                     + " | ".join(f"{d[b]:.2f}" if b in d else "-" for b in ("kws", "ic", "vww", "ad")) + " |")
    lines += ["", f"Prediction error on {len(rows)} published rows (Cortex-M4 and M7 boards; |predicted / "
              "published - 1|):", "",
              "| protocol | feature | median | mean | worst | within ±10% |", "|---|---|---:|---:|---:|---:|"]
    for feat_name, feat in (("instructions (emulated core)", instr), ("MACs (analytical)", macs)):
        e, paths = lobo(rows, feat)
        lines.append(f"| leave-one-board-out | {feat_name} | {_stats(e)} |")
    for feat_name, feat in (("instructions (emulated core)", instr), ("MACs (analytical)", macs)):
        lines.append(f"| one measurement per system | {feat_name} | {_stats(one_per_system(rows, feat))} |")
    cnn = [r for r in rows if r["bench"] != "ad"]
    for feat_name, feat in (("instructions (emulated core)", instr), ("MACs (analytical)", macs)):
        lines.append(f"| one measurement per system, CNNs only (kws, ic, vww) | {feat_name} | "
                     f"{_stats(one_per_system(cnn, feat))} |")
    cmsis = [r for r in rows if r["family"] in ("TFLM + CMSIS-NN", "microTVM + CMSIS-NN")]
    for feat_name, feat in (("instructions (emulated core)", instr), ("MACs (analytical)", macs)):
        lines.append(f"| one measurement per system, CMSIS-NN stacks ({len(cmsis)} rows) | {feat_name} | "
                     f"{_stats(one_per_system(cmsis, feat))} |")
    lines += ["", "Spread of k over the three CNNs (kws, ic, vww) within each system, max/min - 1 (what one "
              "figure per board must absorb):", "", "| stack family | cycles per instruction | cycles per MAC |",
              "|---|---:|---:|"]
    spread: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, d in cpi.items():
        if all(b in d for b in ("kws", "ic", "vww")):
            core = next(r["core"] for r in rows if (r["board"], r["family"], r["round"], r["clock"]) == key)
            per_mac = [d[b] * instr[core, b] / macs[core, b] for b in ("kws", "ic", "vww")]
            per_ins = [d[b] for b in ("kws", "ic", "vww")]
            spread[key[1]].append((max(per_ins) / min(per_ins) - 1, max(per_mac) / min(per_mac) - 1))
    for fam, v in sorted(spread.items()):
        lines.append(f"| {fam} ({len(v)} systems) | {statistics.median(a for a, _ in v):.0%} | "
                     f"{statistics.median(b for _, b in v):.0%} |")
    _, paths = lobo(rows, instr)
    lines += ["", "Leave-one-board-out paths (rows): " + ", ".join(f"{k} {v}" for k, v in paths.items())
              + ". Boards: " + ", ".join(sorted({r['board'] for r in rows})) + "."]
    return "\n".join(lines)


def _err_stats(log_errs: list[float], intervals: list[tuple[float, float] | None]) -> str:
    a = sorted(abs(math.exp(e) - 1) for e in log_errs)
    cov = [lo <= math.exp(e) <= hi for e, iv in zip(log_errs, intervals, strict=True) if iv for lo, hi in [iv]]
    covers = f"{sum(cov) / len(cov):.0%}" if cov else "-"
    return (f"{len(a)} | {statistics.median(a):.1%} | {a[-1]:.0%} | {sum(e <= 0.10 for e in a) / len(a):.0%} | "
            f"{covers}")


def per_class_cpi(rows: list, table: object, groups: tuple[tuple[str, ...], ...]) -> tuple[list[float], int]:
    """Leave one network out with one CPI per group of op classes (measured instructions), fitted by NNLS on
    relative error over the same stack's other networks: log errors of the rows it can predict, and how many
    it cannot (every op class of the held-out network got a CPI of 0)."""
    import numpy as np
    from scipy.optimize import nnls

    def split(bench: str) -> np.ndarray:
        return np.array([sum(la.instructions for la in table.layers if la.model == bench and la.op in g)
                         for g in groups], dtype=float)

    errs, failed = [], 0
    for r in rows:
        train = [q for q in rows if (q.board, q.runtime, q.version) == (r.board, r.runtime, r.version)
                 and q.bench != r.bench]
        coef, _ = nnls(np.array([split(q.bench) / q.cycles for q in train]), np.ones(len(train)))
        pred = float(split(r.bench) @ coef)
        if pred <= 0:
            failed += 1
            continue
        errs.append(math.log(r.cycles / pred))
    return errs, failed


def instruction_holdout() -> str:
    """Each measured network's instructions predicted with its own layers out of the table and the fit."""
    from chipfit.cost.instructions import fit_classes, instruction_tables, predict_layer

    lines = ["", "Instructions of each measured network predicted with its own layers out of the table and the "
             "per-class fit (the reference models exported by TensorFlow; the probes by chipfit's exporter, with "
             "global pooling as MEAN); predicted / measured - 1:", "",
             "| network | " + " | ".join(sorted(instruction_tables().cores)) + " |",
             "|---|" + "---:|" * len(instruction_tables().cores)]
    names = list(dict.fromkeys(la.model for t in instruction_tables().cores.values() for la in t.layers))
    for name in names:
        cells = []
        for _, t in sorted(instruction_tables().cores.items()):
            train = [la for la in t.layers if la.model != name]
            fits, table = fit_classes(train), {la.key: la.instructions for la in train}
            pred = sum(predict_layer(la, table, fits)[0] for la in t.layers if la.model == name)
            cells.append(f"{pred / t.models[name] - 1:+.0%}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paths_table() -> str:
    """The instruction path beside the fitted and analytical paths on the published CMSIS-NN rows."""
    import yaml

    from chipfit.cost.instructions import CPI_RUNTIMES, KNOWLEDGE, instruction_tables
    from chipfit.targets.fit import cross_validate, predict_latency_ms, read_rows
    from chipfit.targets.knowledge import FitTables, interval_for

    t = instruction_tables()
    rows, _ = read_rows()
    sel = [r for r in rows if r.cv and r.runtime in CPI_RUNTIMES]
    key = {(r.board, r.runtime, r.version, r.bench) for r in sel}
    boards = sorted({r.board for r in sel})
    cv = yaml.safe_load((ROOT / "chipfit" / "targets" / KNOWLEDGE).read_text())["cross_validation"]
    ins_iv = t.interval()
    lines = ["", f"The cost model's paths on the {len(sel)} published rows whose stack runs CMSIS-NN's kernels "
             f"({', '.join(sorted({f'{r.runtime}@{r.version}' for r in sel}))}; boards: {', '.join(boards)}; rounds "
             "merged as in `python -m chipfit.targets.fit`). Error |predicted / published - 1|; covers: share of "
             "rows inside the path's stated 80 % interval.", "",
             "| protocol | path | rows | median | worst | within ±10% | 80 % interval covers |",
             "|---|---|---:|---:|---:|---:|---:|"]
    other_board = [r for r in rows if r.cv and r.runtime in CPI_RUNTIMES and r.board not in boards]
    lines.append("| leave-one-board-out | instructions x CPI | 0 | - | - | - | - |")
    preds = [p for p in cross_validate(rows, ("lobo",)) if (p.row.board, p.row.runtime, p.row.version,
                                                           p.row.bench) in key]
    lines.append("| leave-one-board-out | fitted paths of issue 15 (" + ", ".join(sorted({p.path for p in preds}))
                 + f") | {_err_stats([p.log_err for p in preds], [None] * len(preds))} |")
    ana = [math.log(r.latency_ms / predict_latency_ms(FitTables(), r, ())[0]) for r in sel]
    lines.append(f"| no fit | analytical | {_err_stats(ana, [None] * len(ana))} |")
    lines.append("| leave-one-network-out | instructions x CPI, held-out network's layers unseen (the path as "
                 f"shipped) | {_err_stats([c['unseen'] for c in cv], [ins_iv] * len(cv))} |")
    lines.append("| leave-one-network-out | instructions x CPI, held-out network's instructions measured | "
                 f"{_err_stats([c['measured'] for c in cv], [ins_iv] * len(cv))} |")
    rest = ("pool", "add", "softmax", "reshape")
    for label, groups in (("MAC ops / the rest", (("conv", "depthwise", "dense"), rest)),
                          ("conv / depthwise / dense / the rest", (("conv",), ("depthwise",), ("dense",),
                                                                   rest))):
        errs, failed = per_class_cpi(sel, t.cores["cortex-m4"], groups)
        lines.append(f"| leave-one-network-out | instructions x CPI per op class ({label}; NNLS over the other "
                     f"networks; {failed} rows unpredictable: CPI 0 for all their ops) | "
                     f"{_err_stats(errs, [ins_iv] * len(errs))} |")
    lono = [p for p in cross_validate(rows, ("lono",)) if (p.row.board, p.row.runtime, p.row.version,
                                                          p.row.bench) in key]
    shipped = {k: (v["lo"], v["hi"], v["n"]) for k, v in yaml.safe_load(
        (ROOT / "chipfit" / "targets" / "knowledge" / "fitted.yaml").read_text())["latency_residuals"].items()}
    lines.append("| leave-one-network-out | fitted board (issue 15) | "
                 f"{_err_stats([p.log_err for p in lono], [interval_for(shipped, p.path) for p in lono])} |")
    lines += ["", "Leave-one-board-out cannot test the instruction path: every published CMSIS-NN row is on "
              f"{' and '.join(boards)}{'' if not other_board else ' (and others)'}, so with that board left out no "
              "CPI of the stack remains and the cost model takes the fitted paths (row 2: the analytical path, as no "
              "other board publishes these runtime versions). Its stated interval "
              "comes from leave-one-network-out, the protocol the data allow: "
              + (f"x{ins_iv[0]:.2f}-{ins_iv[1]:.2f}." if ins_iv else "none.")
              + " Per held-out row (CPI of the same stack's other networks; error = predicted / published - 1):", "",
              "| stack | network | CPI (others) | error, layers unseen | error, instructions measured |",
              "|---|---|---:|---:|---:|"]
    for c in cv:
        lines.append(f"| {c['runtime']}@{c['version']} | {c['bench']} | {c['cpi']:.3f} | "
                     f"{math.exp(-c['unseen']) - 1:+.1%} | {math.exp(-c['measured']) - 1:+.1%} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="cortex-m4,cortex-m7,cortex-m33", help="comma-separated emulated cores")
    ap.add_argument("--cold", action="store_true", help="also time a first build per core from an empty cache")
    ap.add_argument("--write", action="store_true", help="write the tables into BENCHMARKS.md")
    a = ap.parse_args()
    text = (tables([get_core(c).name for c in a.cores.split(",")], a.cold) + "\n" + paths_table() + "\n"
            + instruction_holdout())
    sys.stdout.write(text + "\n")
    if a.write:
        from bench._report import write_section

        write_section("Virtual board: MLPerf Tiny on emulated Cortex-M cores", text)


if __name__ == "__main__":
    main()
