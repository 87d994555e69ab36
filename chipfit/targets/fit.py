"""Fit chipfit's MCU knowledge to published MLPerf Tiny results, and cross-validate it.

``python -m chipfit.targets.fit`` reads ``knowledge/mlperf_tiny_published.csv`` (closed-division rows of the
four reference models on four boards, MLCommons tiny_results_v0.5..v1.3, Apache-2.0) and
``knowledge/published.yaml``, and writes ``knowledge/fitted.yaml``:

- MACs/cycle per op class (conv, depthwise, dense) per board x runtime x version and per core x runtime x
  version (non-negative least squares on relative error, a weak pull of every class to the group's mean);
- the cycle ratio between cores measured with the same runtime version, and the gain of dual issue;
- mean active power during inference per board x runtime x version (energy / latency);
- the residuals of every prediction path, from leave-one-board-out, leave-one-version-out and
  leave-one-network-out cross-validation: +-the 80th percentile of |log(measured / predicted)| is the 80 %
  interval every prediction states.

``--check`` exits 1 when the shipped file differs from what the data produce. Results of boards other than the
four in the CSV are the test set of these predictions: they are never read here.

>>> rows, excluded = read_rows()
>>> len(rows) > 100, sorted({r.board for r in rows})[:2]
(True, ['DISCO-F746NG', 'NUCLEO-H7A3ZI-Q'])
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import nnls

from chipfit.logging import get_logger
from chipfit.targets.knowledge import (
    MAC_CLASSES,
    UNSEEN_POWER,
    FitTables,
    core_types,
    lookup,
    power_lookup,
    published,
    reference_models,
    runtimes,
)
from chipfit.targets.memory import memory_factor

log = get_logger(__name__)
KNOWLEDGE = Path(str(resources.files("chipfit.targets").joinpath("knowledge")))
CSV_PATH = KNOWLEDGE / "mlperf_tiny_published.csv"
OUT_PATH = KNOWLEDGE / "fitted.yaml"

# software_stack as published -> (runtime, version); a version None is taken from the round (release unnamed)
STACKS: tuple[tuple[str, str, Callable[[re.Match[str], str], str]], ...] = (
    (r"TensorFlow Lite for Microcontrollers v([\d.]+).*cmsis-nn", "tflm-cmsis-nn", lambda m, _: m.group(1)),
    (r"X-CUBE-AI v(\d+)\.(\d+)", "x-cube-ai", lambda m, _: f"{m.group(1)}.{m.group(2)}"),
    (r"Plumerai Inference Engine (\d{4}\.\d{2})", "plumerai", lambda m, _: m.group(1)),
    (r"Plumerai Inference Engine$", "plumerai", lambda _, rnd: "r" + rnd.lstrip("v")),
    (r"microTVM \(TVM (\w+)\) \+ CMSIS-NN", "microtvm-cmsis-nn", lambda m, _: m.group(1)),
    (r"microTVM \(TVM (\w+)\), native", "microtvm", lambda m, _: m.group(1)),
    (r"ONNC \+ CMSIS_5 \((\w+)\)", "onnc", lambda m, _: m.group(1)),
    (r"Bosch HALE v([\d.]+)", "hale", lambda m, _: m.group(1)),
)
BOARDS = {"NUCLEO-L4R5ZI": "stm32l4r5", "NUCLEO-L4R5ZI-P": "stm32l4r5", "NUCLEO-H7A3ZI-Q": "stm32h7a3",
          "DISCO-F746NG": "stm32f746"}  # published board -> chipfit profile
REG = 0.05  # weak pull of every op class toward the group's mean cycles/MAC (keeps unseen classes sane)


@dataclass(frozen=True)
class Row:
    """One published result (duplicates across rounds merged: median latency and energy)."""

    board: str
    profile: str
    core: str
    clock_mhz: float
    runtime: str
    version: str
    bench: str
    latency_ms: float
    energy_uj: float | None
    source: str
    scale: float = 1.0
    cv: bool = True  # part of the cross-validation (MLPerf Tiny rows); False for single-source extras

    @property
    def cycles(self) -> float:
        return self.latency_ms * 1e-3 * self.clock_mhz * 1e6

    @property
    def macs(self) -> float:
        ref = reference_models()[self.bench]
        return sum(ref[c] for c in MAC_CLASSES) * self.scale


def _runtime_of(stack: str, rnd: str) -> tuple[str, str] | None:
    for pattern, name, version in STACKS:
        m = re.search(pattern, stack.strip())
        if m:
            return name, version(m, rnd)
    return None


def read_rows(path: str | Path | None = None) -> tuple[list[Row], list[tuple[str, str]]]:
    """Published rows usable for the fit, and what was left out with why."""
    p = Path(path) if path else CSV_PATH
    raw: dict[tuple[str, str, str, str], list[dict[str, str]]] = defaultdict(list)
    excluded: list[tuple[str, str]] = []
    refs = reference_models()
    with p.open(newline="") as f:
        for r in csv.DictReader(f):
            what = f"{r['round']} {r['board_normalized']} {r['software_stack']} {r['benchmark']}"
            rt = _runtime_of(r["software_stack"], r["round"])
            if r["benchmark"] not in refs:
                excluded.append((what, f"benchmark {r['benchmark']} is not a reference model chipfit has"))
            elif "fp32" in r["notes"] or "float" in r["notes"]:
                excluded.append((what, "float model variant (chipfit fits int8)"))
            elif rt is None:
                excluded.append((what, "software stack not mapped to a runtime"))
            elif r["board_normalized"] not in BOARDS:
                excluded.append((what, "board without a chipfit profile"))
            else:
                raw[(r["board_normalized"], rt[0], rt[1], r["benchmark"])].append(r)
    rows = []
    for (board, name, version, bench), rs in sorted(raw.items()):
        energies = [float(r["energy_uj"]) for r in rs if r["energy_uj"]]
        rows.append(Row(board, BOARDS[board], "cortex-" + rs[0]["core"].split("-")[-1].lower(),
                        float(rs[0]["clock_mhz"]), name, version, bench,
                        float(np.median([float(r["latency_ms"]) for r in rs])),
                        float(np.median(energies)) if energies else None,
                        "; ".join(sorted({f"MLPerf Tiny {r['round']} {r['source_path']}" for r in rs}))))
    for e in published():
        for bench, ms in e["latency_ms"].items():
            rows.append(Row(e["board"], e["profile"], e["core"], float(e["clock_mhz"]), e["runtime"],
                            str(e.get("version", "")), bench, float(ms), None, e["source"],
                            float(e.get("scale", 1.0)), cv=False))
    return rows, excluded


def clock_invariance(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The same published workload (board, software stack, benchmark) at two clocks: cycles at the lower clock
    over cycles at the higher. 1.0 means flash wait states (which grow with the clock) cost no cycles there:
    the ART accelerator and caches hide them, and latency scales as 1 / clock."""
    p = Path(path) if path else CSV_PATH
    seen: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    with p.open(newline="") as f:
        for r in csv.DictReader(f):
            rt = _runtime_of(r["software_stack"], r["round"])
            if rt is not None and r["latency_ms"]:
                key = (r["board_normalized"], f"{rt[0]}@{rt[1]}", r["benchmark"])
                seen[key].append((float(r["clock_mhz"]), float(r["latency_ms"]) * float(r["clock_mhz"]) * 1e3))
    out = {}
    for (board, rt, bench), pts in sorted(seen.items()):
        clocks = sorted({c for c, _ in pts})
        if len(clocks) >= 2:
            lo = float(np.median([cyc for c, cyc in pts if c == clocks[0]]))
            hi = float(np.median([cyc for c, cyc in pts if c == clocks[-1]]))
            out[f"{board}|{rt}|{bench}"] = {"clocks_mhz": [clocks[0], clocks[-1]], "cycles_ratio": _r(lo / hi)}
    return out


def power_model_check(rows: Sequence[Row]) -> dict[str, dict[str, float]]:
    """Per published board whose profile states a power model: the model's mW beside the published mean power
    (energy / latency, geometric mean over its rows) and their ratio."""
    out = {}
    for b in sorted({r.board for r in rows if r.cv and r.energy_uj}):
        rs = [r for r in rows if r.board == b and r.energy_uj]
        t = _profile(rs[0].profile)
        if t.run_current_ua_per_mhz is None or t.supply_v is None:
            continue
        model = t.run_current_ua_per_mhz * 1e-3 * rs[0].clock_mhz * t.supply_v + (t.board_overhead_mw or 0.0)
        pub = _gmean(r.energy_uj / r.latency_ms for r in rs)  # type: ignore[operator]
        out[b] = {"model_mw": _r(model), "published_mw": _r(pub), "ratio": _r(pub / model), "rows": len(rs)}
    return out


def fixed_cycles(row: Row) -> float:
    """Cycles the runtime spends outside MAC layers (per-op dispatch, element-wise ops): runtimes.yaml priors."""
    ref, rt = reference_models()[row.bench], runtimes()[row.runtime]
    return ref["nodes"] * rt.node_overhead_cycles + ref["other_elements"] * rt.element_cycles


def fit_group(rows: Sequence[Row]) -> dict[str, float]:
    """MACs/cycle per op class that best explain ``rows`` (relative error), each class pulled weakly to the mean."""
    refs = reference_models()
    a = np.array([[refs[r.bench][c] * r.scale for c in MAC_CLASSES] for r in rows], dtype=float)
    b = np.array([max(r.cycles - fixed_cycles(r), 0.05 * r.cycles) for r in rows], dtype=float)
    mean_cpm = b.sum() / a.sum()
    w = 1.0 / b
    a_aug = np.vstack([a * w[:, None], REG * np.eye(len(MAC_CLASSES)) / mean_cpm])
    b_aug = np.concatenate([b * w, REG * np.ones(len(MAC_CLASSES))])
    cpm, _ = nnls(a_aug, b_aug)
    cpm = np.where(cpm <= 0.05 * mean_cpm, mean_cpm, cpm)
    return {c: float(1.0 / v) for c, v in zip(MAC_CLASSES, cpm, strict=True)}


def _gmean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def build_tables(rows: Sequence[Row]) -> FitTables:
    """Fits of ``rows`` (no residuals: those come from :func:`cross_validate`)."""
    by_board: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    by_core: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for r in rows:
        by_board[(r.board, r.runtime, r.version)].append(r)
        by_core[(r.core, r.runtime, r.version)].append(r)
    sources = {k: _cite(v) for k, v in {**by_board, **by_core}.items()}
    # cycles on core a over core b, same runtime version and network (boards of a core pooled by median)
    per_core: dict[tuple[str, str, str, str], float] = {}
    for (core, rt, ver), rs in by_core.items():
        for bench in {r.bench for r in rs}:
            per_core[(core, rt, ver, bench)] = float(np.median([r.cycles for r in rs if r.bench == bench]))
    ratios: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for (ca, rt, ver, bench), cyc in per_core.items():
        for (cb, rt2, ver2, bench2), cyc2 in per_core.items():
            if ca != cb and (rt, ver, bench) == (rt2, ver2, bench2):
                ratios[(ca, cb, rt)].append(cyc / cyc2)
                ratios[(ca, cb, "*")].append(cyc / cyc2)
    core_ratio = {k: _gmean(v) for k, v in ratios.items()}
    cts = core_types()
    gains = [v for (a, b, rt), v in core_ratio.items() if rt == "*" and not cts[a].dual_issue and cts[b].dual_issue
             and cts[a].int8_macs_per_cycle == cts[b].int8_macs_per_cycle]
    power: dict[tuple[str, str, str], float] = {}
    for key, rs in by_board.items():
        with_e = [r for r in rs if r.energy_uj]
        if with_e:
            power[key] = _gmean(r.energy_uj / r.latency_ms for r in with_e)  # type: ignore[operator]
    return FitTables(
        board_fits={k: fit_group(v) for k, v in by_board.items()},
        core_fits={k: fit_group(v) for k, v in by_core.items()},
        board_profile={r.board: r.profile for r in rows}, board_core={r.board: r.core for r in rows},
        board_clock={r.board: r.clock_mhz for r in rows}, core_ratio=core_ratio,
        dual_issue_gain=_gmean(gains) if gains else None, power=power, sources=sources,
    )


def _cite(rows: Sequence[Row]) -> str:
    rounds = sorted({s.split(" ")[2] if s.startswith("MLPerf Tiny") else s for r in rows for s in r.source.split("; ")})
    return f"{len(rows)} published rows ({', '.join(rounds)})"


@dataclass(frozen=True)
class Prediction:
    """One held-out published row, predicted without it."""

    row: Row
    fold: str  # lobo / lovo / lono
    latency_ms: float
    path: str
    energy_uj: float | None
    power_path: str
    naive_latency_ms: float
    naive_energy_uj: float | None

    @property
    def log_err(self) -> float:
        return math.log(self.row.latency_ms / self.latency_ms)

    @property
    def power_log_err(self) -> float | None:
        """log(published power / predicted power), power = energy / latency (the latency error taken out)."""
        if self.row.energy_uj is None or self.energy_uj is None:
            return None
        return math.log((self.row.energy_uj / self.row.latency_ms) / (self.energy_uj / self.latency_ms))

    @property
    def energy_log_err(self) -> float | None:
        if self.row.energy_uj is None or self.energy_uj is None:
            return None
        return math.log(self.row.energy_uj / self.energy_uj)


def predict_latency_ms(tables: FitTables, row: Row, boards: Sequence[str], *, memory: bool = True
                       ) -> tuple[float, str]:
    """Latency of ``row`` from the fit in ``tables``, through the first path with data; with ``memory``, cycles
    scaled by the board's memory system (:func:`row_memory_factor`) over that of the boards the fit rests on."""
    eff = lookup(tables, row.core, row.runtime, row.version, boards)
    ref = reference_models()[row.bench]
    cycles = sum(ref[c] * row.scale / eff.macs_per_cycle[c] for c in MAC_CLASSES) + fixed_cycles(row)
    if memory:
        fitted_on = [row_memory_factor(tables.board_profile[b], tables.board_clock[b]) for b in tables.board_profile]
        cycles *= row_memory_factor(row.profile, row.clock_mhz) / (_gmean(fitted_on) if fitted_on else 1.0)
    return cycles / (row.clock_mhz * 1e3), eff.path


def row_memory_factor(profile: str, clock_mhz: float) -> float:
    """The memory-system factor (:func:`chipfit.targets.memory.memory_factor`) of ``profile`` at ``clock_mhz``."""
    return memory_factor(_profile(profile).memory, clock_mhz)[0]


def predict_power_mw(tables: FitTables, row: Row, boards: Sequence[str]) -> tuple[float, str]:
    """Power and its power path, as the cost model takes it (:meth:`chipfit.cost.model.CostModel._power`),
    except that a profile's declared active power is skipped: on the published boards it was derived from these
    very rows."""
    found = power_lookup(tables, boards, row.core, row.clock_mhz, row.runtime, row.version, same_core=False)
    if found is not None:
        return found[0], found[2]
    t = _profile(row.profile)
    if t.run_current_ua_per_mhz is not None and t.supply_v is not None:
        return (t.run_current_ua_per_mhz * 1e-3 * row.clock_mhz * t.supply_v + (t.board_overhead_mw or 0.0),
                "power model")
    found = power_lookup(tables, (), row.core, row.clock_mhz, row.runtime, row.version)
    if found is not None:
        return found[0], found[2]
    per_mhz = [v / tables.board_clock[b] for (b, _, _), v in tables.power.items()]
    return _gmean(per_mhz) * row.clock_mhz, "other core"


def _profile(name: str) -> Any:
    from chipfit.targets.registry import create_target

    return create_target(name)


def _naive(train: Sequence[Row], row: Row) -> tuple[float, float | None]:
    """MACs / (one MACs-per-cycle per runtime x clock); energy = that x the training boards' mW/MHz x clock."""
    per_rt = [r.macs / r.cycles for r in train if r.runtime == row.runtime] or [r.macs / r.cycles for r in train]
    ms = row.macs / (float(np.median(per_rt)) * row.clock_mhz * 1e3)
    mw_mhz = [r.energy_uj / r.latency_ms / r.clock_mhz for r in train if r.energy_uj]
    return ms, ms * _gmean(mw_mhz) * row.clock_mhz if mw_mhz else None


def _predict(train: Sequence[Row], test: Sequence[Row], fold: str, boards: Callable[[Row], Sequence[str]],
             memory: bool = True) -> list[Prediction]:
    tables = build_tables(train)
    out = []
    for r in test:
        ms, path = predict_latency_ms(tables, r, boards(r), memory=memory)
        mw, ppath = predict_power_mw(tables, r, boards(r))
        nms, ne = _naive(train, r)
        out.append(Prediction(r, fold, ms, path, ms * mw if r.energy_uj else None, ppath, nms,
                              ne if r.energy_uj else None))
    return out


def cross_validate(rows: Sequence[Row], kinds: Sequence[str] = ("lobo", "lovo", "lono"), *,
                   memory: bool = True) -> list[Prediction]:
    """Held-out predictions of every published MLPerf Tiny row: leave one board out (the board is unseen),
    leave one runtime version out (the version is unseen), leave one network out (the board and version are
    fitted, the network is unseen). ``memory=False`` leaves out the memory-system factor (for comparison)."""
    cv = [r for r in rows if r.cv]
    extra = [r for r in rows if not r.cv]
    out: list[Prediction] = []
    if "lobo" in kinds:
        for b in sorted({r.board for r in cv}):
            out += _predict([r for r in cv if r.board != b] + extra, [r for r in cv if r.board == b], "lobo",
                            lambda r: (r.board,), memory)
    if "lovo" in kinds:
        for rt, ver in sorted({(r.runtime, r.version) for r in cv}):
            held = [r for r in cv if (r.runtime, r.version) == (rt, ver)]
            out += _predict([r for r in cv if (r.runtime, r.version) != (rt, ver)] + extra, held, "lovo",
                            lambda r: (r.board,), memory)
    if "lono" in kinds:
        for b, rt, ver, bench in sorted({(r.board, r.runtime, r.version, r.bench) for r in cv}):
            held = [r for r in cv if (r.board, r.runtime, r.version, r.bench) == (b, rt, ver, bench)]
            train = [r for r in cv if not (r.board == b and r.runtime == rt and r.version == ver and r.bench == bench)]
            if not any(r.board == b and r.runtime == rt and r.version == ver for r in train):
                continue  # nothing left of this group: not a fitted-board prediction
            out += _predict(train + extra, held, "lono", lambda r: (r.board,), memory)
    return out


def residual_quantiles(errs: dict[str, list[float]]) -> dict[str, tuple[float, float, int]]:
    """The 80 % interval of log(measured / predicted) per path, and over all paths (``*``): symmetric,
    +-the 80th percentile of the absolute log error. Symmetric because a path's bias flips sign with the
    direction of the transfer (an M7 predicted from M4 rows errs one way, an M4 from M7 rows the other), so
    the 10th/90th percentiles of one direction miss the other: on held-out boards they covered 67 %, the
    symmetric interval 75-78 % (bench/predictor_mcu.py)."""
    def half(v: list[float]) -> float:
        return float(np.percentile(np.abs(v), 80))

    allv = [e for v in errs.values() for e in v]
    out = {k: (-half(v), half(v), len(v)) for k, v in errs.items() if v}
    if allv:
        out["*"] = (-half(allv), half(allv), len(allv))
    return out


def residuals(preds: Sequence[Prediction]) -> tuple[dict[str, tuple[float, float, int]],
                                                     dict[str, tuple[float, float, int]],
                                                     dict[str, tuple[float, float, int]]]:
    """80 % intervals of log(measured / predicted): latency and energy per latency path, power per power path."""
    lat: dict[str, list[float]] = defaultdict(list)
    en: dict[str, list[float]] = defaultdict(list)
    pw: dict[str, list[float]] = defaultdict(list)
    for p in preds:
        lat[p.path].append(p.log_err)
        if p.energy_log_err is not None:
            en[p.path].append(p.energy_log_err)
        if p.power_log_err is not None:
            pw[p.power_path].append(p.power_log_err)
            if not p.power_path.startswith("fitted board"):
                pw[UNSEEN_POWER].append(p.power_log_err)  # the fall-back of a power path with few residuals
    return residual_quantiles(lat), residual_quantiles(en), residual_quantiles(pw)


def fit(rows: Sequence[Row]) -> FitTables:
    """The shipped fit: tables from every row, residuals from the cross-validation."""
    tables = build_tables(rows)
    lat, en, pw = residuals(cross_validate(rows))
    return replace(tables, latency_residuals=lat, energy_residuals=en, power_residuals=pw)


def _r(x: float) -> float:
    return float(f"{x:.6g}")


def to_dict(t: FitTables, rows: Sequence[Row], excluded: Sequence[tuple[str, str]]) -> dict[str, Any]:
    def k3(k: tuple[str, str, str]) -> str:
        return "|".join(k)

    def q(d: dict[str, tuple[float, float, int]]) -> dict[str, Any]:
        return {k: {"lo": _r(v[0]), "hi": _r(v[1]), "n": v[2]} for k, v in sorted(d.items())}

    return {
        "boards": {b: {"profile": t.board_profile[b], "core": t.board_core[b], "clock_mhz": t.board_clock[b],
                       "rows": sum(1 for r in rows if r.board == b),
                       "memory_factor": _r(row_memory_factor(t.board_profile[b], t.board_clock[b]))}
                   for b in sorted(t.board_profile)},
        "board_fits": {k3(k): {c: _r(x) for c, x in v.items()} for k, v in sorted(t.board_fits.items())},
        "core_fits": {k3(k): {c: _r(x) for c, x in v.items()} for k, v in sorted(t.core_fits.items())},
        "core_ratio": {k3(k): _r(v) for k, v in sorted(t.core_ratio.items())},
        "dual_issue_gain": None if t.dual_issue_gain is None else _r(t.dual_issue_gain),
        "power_mw": {k3(k): _r(v) for k, v in sorted(t.power.items())},
        "latency_residuals": q(dict(t.latency_residuals)),
        "energy_residuals": q(dict(t.energy_residuals)),
        "power_residuals": q(dict(t.power_residuals)),
        "sources": {k3(k): v for k, v in sorted(t.sources.items())},
        "rows_used": len(rows),
        "excluded": [f"{w}: {why}" for w, why in excluded],
    }


HEADER = """# GENERATED by `python -m chipfit.targets.fit` from knowledge/mlperf_tiny_published.csv and published.yaml.
# Do not edit: rerun the script (tests/targets/test_fit.py checks this file equals its output).
# board_fits / core_fits: MACs per cycle per op class, keyed board|runtime|version and core|runtime|version.
# core_ratio: cycles on core a over core b (same runtime version and network), keyed a|b|runtime (* = all).
# power_mw: mean power during inference (published energy / latency), keyed board|runtime|version.
# clock_invariance: one published workload at two clocks; cycles_ratio = cycles at the low clock / at the high
# one (1.0: flash wait states cost no cycles on that board, so latency scales as 1 / clock).
# *_residuals: the 80 % interval (lo, hi) of log(measured / predicted) per prediction path: +-the 80th percentile
# of |log error| over the leave-one-board-out, leave-one-version-out and leave-one-network-out predictions (n rows).
# power_residuals: the same for the active power (published energy / latency) per power path; an energy interval
# combines the latency and power half-widths as sqrt(l^2 + p^2) (knowledge.energy_interval).
# power_model_check: on published boards whose profile has a power model (uA/MHz x clock x V + overhead), the
# model's mW beside the published mean mW (not used to predict: fitting an overhead on one board and moving it to
# another made the held-out energy worse, bench/predictor_mcu.py).
"""


def render(path: str | Path | None = None) -> str:
    rows, excluded = read_rows(path)
    d = to_dict(fit(rows), rows, excluded)
    d["clock_invariance"] = clock_invariance(path)
    d["power_model_check"] = power_model_check(rows)
    return HEADER + yaml.safe_dump(d, sort_keys=False, width=120)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chipfit.targets.fit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", help=f"published results (default {CSV_PATH.name} in the package)")
    ap.add_argument("--out", default=str(OUT_PATH), help="where to write the fitted knowledge")
    ap.add_argument("--check", action="store_true", help="exit 1 when --out differs from what the data produce")
    args = ap.parse_args(argv)
    text = render(args.csv)
    out = Path(args.out)
    if args.check:
        same = out.is_file() and out.read_text() == text
        state = "up to date" if same else "differs from the data: run python -m chipfit.targets.fit"
        sys.stdout.write(f"{out}: {state}\n")
        return 0 if same else 1
    out.write_text(text)
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
