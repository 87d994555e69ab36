"""The instruction path of the cost model: per-layer instruction counts of the TFLM + CMSIS-NN firmware on the
emulated core, times a board's cycles per instruction (CPI).

QEMU counts the instructions the real firmware executes per operator (``chipfit measure --board qemu:<core>``);
what it cannot know (pipeline stalls, flash wait states, caches) is one figure per board x runtime stack: the
CPI, fitted on the published MLPerf Tiny latencies of the same reference models (``cycles / instructions``),
or measured on the user's own board (``chipfit calibrate --serial``). Within a CMSIS-NN stack that figure
varies 4-6 % across kws/ic/vww where cycles per MAC vary 29-42 % (``bench/virtual_board.py``), so a layer's
instruction count carries what MACs miss: channel counts, im2col, requantisation, per-op overhead.

Where the numbers come from (``knowledge/instructions.yaml``, written by ``python -m
chipfit.measure.instructions``; nothing in it is typed by hand):

* ``cores.<core>.layers``: the measured table, one row per operator of the four MLPerf Tiny int8 models run
  on the emulated core (op, element counts, MACs, weights, kernel, stride, fused activation; instructions). A
  layer that matches a row, from a .tflite or a torch module alike, takes its measured count.
* ``cores.<core>.fit``: per op class, non-negative least squares of instructions on layer features (MACs,
  im2col elements, output and input elements, a constant) over the table; every other layer takes this.
* ``cpi``: per published board x runtime x version whose kernels are CMSIS-NN's (TFLM + CMSIS-NN,
  microTVM + CMSIS-NN), the geometric mean of published cycles / emulated instructions. One figure per
  stack, not per op class: four networks per stack do not support more. Held out one network at a time, a
  CPI per op class (NNLS over the other three) erred 17 % median (MAC ops / the rest; worst 68 %) or, per
  conv / depthwise / dense / rest, could not price 2 of 8 rows at all (a class whose CPI came out 0) and
  erred up to 113 %, where one CPI errs 9 % median, 29 % worst (``bench/virtual_board.py``).
* ``residuals``: leave-one-network-out, the held-out network's layers *not* in the table nor in the fit and
  its published row not in the CPI: the 80 % interval (``exp(+-p80 |log error|)``) of the path.

>>> fits = instruction_tables()
>>> sorted(fits.cores)[:2], sorted(fits.cpi)[0][1]
(['cortex-m33', 'cortex-m4'], 'microtvm-cmsis-nn')
"""

from __future__ import annotations

import functools
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import yaml

from chipfit.graph.opgraph import Node, OpClass, OpGraph

KNOWLEDGE = "knowledge/instructions.yaml"
CPI_RUNTIMES = ("tflm-cmsis-nn", "microtvm-cmsis-nn")  # stacks whose kernels are the emulated firmware's
PATH_FITTED = "instructions x CPI, fitted board"
PATH_CALIBRATED = "instructions x CPI, calibrated board"
_MAC = ("conv", "depthwise", "dense")

# features per op class (the pooled classes serve an op class the table has no layer of)
FEATURES: dict[str, tuple[str, ...]] = {
    "conv": ("macs", "im2col", "out"),  # a constant took 145 k instructions per conv: no small layer has that
    "depthwise": ("macs", "out", "one"),
    "dense": ("macs", "out", "one"),
    "pool": ("in", "out", "one"),
    "mean": ("in", "out", "one"),  # global average pooling as chipfit's exporter writes it (TFLM's MEAN kernel)
    "alias": ("one",),
    "*mac": ("macs", "out", "one"),
    "*elementwise": ("in", "out", "one"),
}


@dataclass(frozen=True)
class Layer:
    """One operator as the instruction model sees it (layout-free: shapes only enter as element counts)."""

    op: str
    op_type: str
    key: str
    macs: int
    im2col: int
    out: int
    inp: int
    instructions: int = 0
    model: str = ""

    def feature(self, name: str) -> float:
        return {"macs": self.macs, "im2col": self.im2col, "out": self.out, "in": self.inp, "one": 1}[name]


_ALIAS = {c.value for c in OpClass if c.is_alias}
# Global average pooling runs as TFLM's MEAN (no CMSIS-NN kernel; ~160 instructions per input element on the
# M4, 20x AVERAGE_POOL_2D's) in a .tflite from chipfit's exporter: a torch module's or an ONNX graph's global
# pooling is priced as that, a .tflite's as the op it holds.
MEAN_TYPES = ("MEAN", "global_avg_pool", "GlobalAveragePool", "ReduceMean")


def op_class(layer: Layer) -> str:
    """The instruction model's class of ``layer``: ``alias`` for reshapes and the like, ``mean`` for global
    average pooling as exported by chipfit (:data:`MEAN_TYPES`), else its op."""
    if layer.op in _ALIAS:
        return "alias"
    return "mean" if layer.op == "pool" and layer.op_type in MEAN_TYPES else layer.op


def layers_of(graph: OpGraph) -> list[Layer]:
    """The graph's nodes as :class:`Layer` records (instructions 0: to be predicted or measured)."""
    return [_layer(graph, n) for n in graph.nodes]


def _layer(graph: OpGraph, n: Node) -> Layer:
    def numel(ts: Iterable[str]) -> int:
        return sum(graph.tensors[t].numel for t in ts if t in graph.tensors)

    out, inp = numel(n.outputs), numel(n.inputs)
    im2col = 0
    if n.op.value == "conv" and n.weights and out:
        im2col = round(n.macs * n.macs / (out * n.weights))  # pixels x kh x kw x cin = MACs / cout
    # layout-free (a torch graph's NCHW layer meets the .tflite's NHWC one), fused activation included
    kernel, stride = "x".join(map(str, n.kernel)), "x".join(map(str, n.stride))
    layer = Layer(n.op.value, n.op_type, "", int(n.macs), int(im2col), int(out), int(inp))
    key = (f"{op_class(layer)}|in {inp}|out {out}|macs {n.macs}|w {n.weights}|k {kernel}|s {stride}|"
           f"{n.activation or ''}")
    return Layer(n.op.value, n.op_type, key, int(n.macs), int(im2col), int(out), int(inp))


@dataclass(frozen=True)
class ClassFit:
    features: tuple[str, ...]
    coef: tuple[float, ...]

    def predict(self, layer: Layer) -> float:
        return float(sum(c * layer.feature(f) for c, f in zip(self.coef, self.features, strict=True)))


def fit_classes(layers: Sequence[Layer]) -> dict[str, ClassFit]:
    """Per op class (and the pooled ``*mac`` / ``*elementwise`` classes), NNLS of instructions on features."""
    from scipy.optimize import nnls

    groups: dict[str, list[Layer]] = defaultdict(list)
    for layer in layers:
        cls = op_class(layer)
        groups[cls].append(layer)
        if cls != "alias":
            groups["*mac" if cls in _MAC else "*elementwise"].append(layer)
    out = {}
    for cls, ls in sorted(groups.items()):
        feats = FEATURES.get(cls, FEATURES["*elementwise"])
        a = np.array([[layer.feature(f) for f in feats] for layer in ls], dtype=float)
        b = np.array([layer.instructions for layer in ls], dtype=float)
        scale = np.maximum(a.max(axis=0), 1.0)
        coef, _ = nnls(a / scale, b)
        out[cls] = ClassFit(feats, tuple(float(f"{c:.6g}") for c in coef / scale))
    return out


def predict_layer(layer: Layer, table: Mapping[str, int], fits: Mapping[str, ClassFit]) -> tuple[float, str]:
    """Instructions of ``layer`` and how: ``table`` (measured, same op and shapes) or ``fit``."""
    if layer.key in table:
        return float(table[layer.key]), "table"
    cls = op_class(layer)
    f = fits.get(cls) or fits.get("*mac" if cls in _MAC else "*elementwise") or fits.get("*elementwise")
    floor = fits["alias"].coef[0] if "alias" in fits else 0.0  # what an operator costs that does nothing
    if f is None:
        return floor, "fit"
    return max(f.predict(layer), floor), "fit"


@dataclass(frozen=True)
class CoreTable:
    """What was measured on one emulated core: the layer table and the per-class fit over it."""

    core: str
    layers: tuple[Layer, ...]
    fits: Mapping[str, ClassFit]
    models: Mapping[str, int]  # measured instructions per reference model (sum over its operators)

    @functools.cached_property
    def table(self) -> dict[str, int]:
        by_key: dict[str, list[int]] = defaultdict(list)
        for layer in self.layers:
            by_key[layer.key].append(layer.instructions)
        return {k: int(np.median(v)) for k, v in by_key.items()}

    def predict(self, graph: OpGraph) -> tuple[list[float], int]:
        """Instructions per node of ``graph``, and how many nodes the measured table covered."""
        out, hits = [], 0
        for layer in layers_of(graph):
            n, how = predict_layer(layer, self.table, self.fits)
            out.append(n)
            hits += how == "table"
        return out, hits


@dataclass(frozen=True)
class CpiFit:
    """Cycles per emulated instruction of one board x runtime x version."""

    board: str
    core: str
    runtime: str
    version: str
    clock_mhz: float
    cpi: float
    per_bench: Mapping[str, float] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class InstructionTables:
    cores: Mapping[str, CoreTable]
    cpi: Mapping[tuple[str, str, str], CpiFit]  # (board, runtime, version)
    residuals: tuple[float, float, int] | None  # (lo, hi, n) of log(published / predicted), held-out network
    firmware: str = ""

    def interval(self) -> tuple[float, float] | None:
        if self.residuals is None:
            return None
        return math.exp(self.residuals[0]), math.exp(self.residuals[1])


def gmean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def fit_cpi(rows: Iterable[Any], totals: Mapping[tuple[str, str], float]) -> dict[tuple[str, str, str], CpiFit]:
    """CPI per (board, runtime, version) from published rows (``chipfit.targets.fit.Row``) of the CMSIS-NN
    stacks, with ``totals[(core, bench)]`` the emulated instructions of each reference model."""
    groups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for r in rows:
        if r.runtime in CPI_RUNTIMES and r.cv and (r.core, r.bench) in totals:
            groups[(r.board, r.runtime, r.version)].append(r)
    out = {}
    for key, rs in sorted(groups.items()):
        per = {r.bench: r.cycles / totals[(r.core, r.bench)] for r in rs}
        out[key] = CpiFit(key[0], rs[0].core, key[1], key[2], rs[0].clock_mhz, float(f"{gmean(per.values()):.5g}"),
                          {b: float(f"{v:.5g}") for b, v in sorted(per.items())},
                          "; ".join(sorted({r.source for r in rs})))
    return out


def cross_validate(rows: Sequence[Any], cores: Mapping[str, CoreTable]) -> list[dict[str, Any]]:
    """Leave one network out: each published CMSIS-NN row predicted with the held-out network's layers out of
    the table and the fit (``unseen``), and with its measured instructions (``measured``); the CPI from the
    same system's other networks."""
    out = []
    for r in rows:
        if r.runtime not in CPI_RUNTIMES or not r.cv or r.core not in cores:
            continue
        ct = cores[r.core]
        others = [q for q in rows if (q.board, q.runtime, q.version) == (r.board, r.runtime, r.version)
                  and q.bench != r.bench and q.bench in ct.models]
        if not others or r.bench not in ct.models:
            continue
        cpi = gmean(q.cycles / ct.models[q.bench] for q in others)
        train = [la for la in ct.layers if la.model != r.bench]
        fits = fit_classes(train)
        table = {la.key: la.instructions for la in train}
        unseen = sum(predict_layer(la, table, fits)[0] for la in ct.layers if la.model == r.bench)
        out.append({"board": r.board, "runtime": r.runtime, "version": r.version, "bench": r.bench,
                    "published_cycles": r.cycles, "cpi": cpi,
                    "unseen": math.log(r.cycles / (cpi * unseen)),
                    "measured": math.log(r.cycles / (cpi * ct.models[r.bench]))})
    return out


def _layer_dict(la: Layer) -> dict[str, Any]:
    return {"model": la.model, "op": la.op, "op_type": la.op_type, "key": la.key, "macs": la.macs,
            "im2col": la.im2col, "out": la.out, "in": la.inp, "instructions": la.instructions}


def to_dict(cores: Mapping[str, CoreTable], cpi: Mapping[tuple[str, str, str], CpiFit],
            cv: Sequence[Mapping[str, Any]], firmware: str) -> dict[str, Any]:
    """The knowledge file's content (rounded so that it is reproducible)."""
    from chipfit.targets.fit import residual_quantiles

    q = residual_quantiles({"unseen": [c["unseen"] for c in cv]}).get("unseen") if cv else None
    qm = residual_quantiles({"measured": [c["measured"] for c in cv]}).get("measured") if cv else None
    return {
        "generated_by": "python -m chipfit.measure.instructions",
        "firmware": firmware,
        "residuals": {"lo": round(q[0], 4), "hi": round(q[1], 4), "n": q[2],
                      "protocol": "leave one network out; held-out network's layers not in the table or fit"}
        if q else None,
        "residuals_measured_instructions": {"lo": round(qm[0], 4), "hi": round(qm[1], 4), "n": qm[2]} if qm else None,
        "cross_validation": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items()} for c in cv],
        "cpi": {f"{k[0]}|{k[1]}|{k[2]}": {"core": f.core, "clock_mhz": f.clock_mhz, "cpi": f.cpi,
                                          "per_bench": dict(f.per_bench), "source": f.source}
                for k, f in sorted(cpi.items())},
        "cores": {c: {"models": dict(sorted(t.models.items())),
                      "fit": {k: {"features": list(v.features), "coef": list(v.coef)} for k, v in t.fits.items()},
                      "layers": [_layer_dict(la) for la in t.layers]}
                  for c, t in sorted(cores.items())},
    }


def tables_from_dict(d: Mapping[str, Any]) -> InstructionTables:
    cores = {}
    for c, t in (d.get("cores") or {}).items():
        layers = tuple(Layer(la["op"], la["op_type"], la["key"], la["macs"], la["im2col"], la["out"], la["in"],
                             la["instructions"], la["model"]) for la in t["layers"])
        fits = {k: ClassFit(tuple(v["features"]), tuple(float(x) for x in v["coef"])) for k, v in t["fit"].items()}
        cores[c] = CoreTable(c, layers, fits, {k: int(v) for k, v in t["models"].items()})
    cpi = {}
    for k, v in (d.get("cpi") or {}).items():
        b, r, ver = k.split("|")
        cpi[(b, r, ver)] = CpiFit(b, v["core"], r, ver, float(v["clock_mhz"]), float(v["cpi"]),
                                  dict(v.get("per_bench", {})), v.get("source", ""))
    res = d.get("residuals")
    return InstructionTables(cores, cpi, (res["lo"], res["hi"], res["n"]) if res else None, d.get("firmware", ""))


@functools.cache
def instruction_tables() -> InstructionTables:
    """The shipped tables (``knowledge/instructions.yaml``); empty where the file is absent."""
    f = resources.files("chipfit.targets").joinpath(KNOWLEDGE)
    if not f.is_file():
        return InstructionTables({}, {}, None)
    return tables_from_dict(yaml.safe_load(f.read_text()))


@dataclass(frozen=True)
class InstructionEstimate:
    """A graph's instructions per node on the emulated core, the CPI that turns them into cycles, the path
    (fitted board or calibrated board), where the CPI comes from, and the path's 80 % interval (factors)."""

    instructions: tuple[float, ...]
    table_hits: int
    cpi: float
    path: str
    source: str
    interval: tuple[float, float] | None

    @property
    def total(self) -> float:
        return float(sum(self.instructions))

    def describe(self, nodes: int) -> str:
        return (f"{self.total / 1e6:.3g} M instructions of the TFLM + CMSIS-NN firmware on the emulated core "
                f"({self.table_hits} of {nodes} layers measured, the rest from the per-class instruction fit) x "
                f"{self.cpi:.3g} cycles per instruction ({self.source})")


def published_cpi(boards: Iterable[str], runtime: str, version: str | None) -> CpiFit | None:
    """The fitted CPI of ``runtime@version`` on one of the published ``boards``, if any."""
    t = instruction_tables()
    for b in boards:
        f = t.cpi.get((b, runtime, version or ""))
        if f is not None:
            return f
    return None


def estimate_instructions(graph: OpGraph, core: str, cpi: CpiFit | None, *, calibrated: Any = None
                          ) -> InstructionEstimate | None:
    """The instruction path for ``graph`` on ``core``: with a board calibration (``calibrated``: a
    :class:`chipfit.cost.calibration.CpiCalibration`) first, else the published ``cpi``; None where the
    emulated core has no table or neither CPI exists."""
    t = instruction_tables()
    table = t.cores.get(core)
    if table is None or (cpi is None and calibrated is None):
        return None
    per_node, hits = table.predict(graph)
    if calibrated is not None:
        return InstructionEstimate(tuple(per_node), hits, calibrated.cpi, PATH_CALIBRATED, calibrated.describe(),
                                   calibrated.interval() or t.interval())
    assert cpi is not None
    label = f"{cpi.runtime}@{cpi.version}" if cpi.version else cpi.runtime
    rounds = sorted(set(re.findall(r"MLPerf Tiny (v[\d.]+)", cpi.source)))
    src = (f"published {label} cycles / emulated instructions on {cpi.board} @ {cpi.clock_mhz:g} MHz: "
           f"{', '.join(sorted(cpi.per_bench))} (MLPerf Tiny {', '.join(rounds) or 'results'})")
    return InstructionEstimate(tuple(per_node), hits, cpi.cpi, PATH_FITTED, src, t.interval())
