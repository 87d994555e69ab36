"""Calibration: a latency model for one target x runtime x dtype, fitted to measurements of probe networks.

The analytical model (:mod:`chipfit.cost.model`) prices each node from datasheet peaks and published
efficiencies. Where the runtime can be measured (the host, or a board behind ``chipfit agent``) chipfit
instead fits, by non-negative least squares on relative error, the cost of each *feature* of a node:
MACs per op class (with the channel padding vectorised kernels pay), per-node overheads, the elements a
node reads and writes, and two effects found by profiling ONNX Runtime on x86 (``chipfit/measure``):

- a first convolution over 1-7 input channels runs an unvectorised im2col (cost per im2col element, one for a
  single input channel and one for two or three);
- GEMM-based convolutions pad output channels to 16 and the reduction to 4, and fewer than 16 output channels
  run a slower narrow kernel; depthwise convolutions pad channels to 32 and pay more when not 16-aligned;
- a 1-D convolution has its own fixed cost per node (it runs as a 2-D one of height 1);
- a convolution whose input or output feeds several nodes (a residual block) is not fused into
  ``QLinearConv`` by ONNX Runtime's QDQ optimiser and runs in float between Dequantize/Quantize nodes (a
  QOperator file's ``QLinearConv`` stays quantized); it dequantizes its weights on every run;
- QDQ convolutions on uint8 activations are fused even where they fan out, and run a kernel of their own;
- a windowed (not global) pool costs per output x window;
- a QOperator ``QLinearConv`` on int8 (rather than uint8) activations runs an unvectorised path, ~6x the
  time per MAC (ONNX Runtime warns about it when quantizing).

The prediction of a graph is the sum of its nodes' feature costs plus a fixed per-inference cost; the
per-node sums become the per-layer latencies of the :class:`~chipfit.cost.model.Cost`.

Where the runtime profiles per node (ONNX Runtime; ``chipfit calibrate --node-model trees``, the default),
gradient-boosted trees (:mod:`chipfit.cost.nodecost`) are also fitted to the probes' per-node profile times of
MAC and pool nodes, and their prediction is added to those nodes' feature costs, scaled by one more fitted
coefficient (``trees``); ``--node-model linear`` keeps the feature costs alone.

>>> cal = Calibration(target="host", runtime="onnxruntime", dtype="int8", device="d", scheme=SCHEME,
...                   coefficients={"const": 0.01, "nodes_dense": 0.002, "pmacs_dense": 1e-6},
...                   measurements=3, estimator="min")
>>> cal.applies_to("host", "onnxruntime", "int8")
True
"""

from __future__ import annotations

import collections
import datetime as _dt
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.cost.nodecost import TreeEnsemble, fit_trees, node_descriptors
from chipfit.errors import MeasurementError
from chipfit.graph.opgraph import OpGraph

SCHEME = "cpu-features-v6"  # v6: an optional per-node tree model (``node_model``) beside the feature costs
# Vector widths the kernels pad to, found by timing 360 single-layer int8 models with ONNX Runtime on x86 and
# checked on an exploratory probe set (seed 7): GEMM output channels to 16 (fewer than 16 output channels run a
# slower narrow kernel), reduction depth to 4, depthwise channels to 32 (and 16-channel alignment).
_CONV_N, _CONV_K, _DW_C, _DW_VEC = 16, 4, 32, 16
REFERENCE_TOLERANCE = 0.05  # a calibration is rescaled when the machine runs the reference >5 % faster or slower


def _up(x: int, b: int) -> int:
    return -(-x // b) * b


def node_features(graph: OpGraph) -> list[dict[str, float]]:
    """Per node (in graph order) the features the calibrated model prices; alias nodes get ``{}``."""
    consumers = collections.Counter(t for n in graph.nodes for t in n.inputs)
    for t in graph.outputs:
        consumers[t] += 1
    out: list[dict[str, float]] = []
    for n in graph.nodes:
        f: dict[str, float] = {}
        if n.op.is_alias:
            out.append(f)
            continue
        outs = [graph.tensors[t] for t in n.outputs if t in graph.tensors]
        ins = [graph.tensors[t] for t in n.inputs if t in graph.tensors]
        out_n, in_n = sum(t.numel for t in outs), sum(t.numel for t in ins)
        c = n.op.value
        one_d = c == "conv" and bool(outs) and len(outs[0].shape) == 3  # 1-D convolutions pay another per-node cost
        f[f"nodes_{c}_1d" if one_d else f"nodes_{c}"] = 1.0
        if c in ("conv", "depthwise", "dense"):
            cout = outs[0].shape[1] if outs and len(outs[0].shape) > 1 else 1
            cin = ins[0].shape[1] if ins and len(ins[0].shape) > 1 else 1
            pix = max(1, out_n // max(1, cout))
            taps = n.macs // max(1, out_n) if c == "depthwise" else n.macs // max(1, pix * cout)
            # QOperator files already hold QLinearConv, which ONNX Runtime runs quantized whatever feeds it
            # (on uint8 activations it fuses them anyway)
            fans = c != "dense" and not n.op_type.startswith("QLinear") and n.attrs.get("act_dtype") != "uint8" and (
                consumers[n.inputs[0]] > 1 or consumers[n.outputs[0]] > 1)
            kxk = bool(n.kernel) and math.prod(n.kernel) > 1
            if n.attrs.get("quant") == "qoperator" and n.attrs.get("act_dtype") == "int8" and c != "dense":
                # QLinearConv on int8 (not uint8) activations: ONNX Runtime's slow, unvectorised x86 path
                f.update({"s8op_n": 1.0, "s8op_dw_macs" if c == "depthwise" else "s8op_macs": n.macs})
            elif fans:
                # runs in float between Dequantize/Quantize nodes, dequantizing its weights on every run
                f.update(fmacs=n.macs, fnodes=1.0, fio=in_n + out_n, fweights=n.weights)
                if kxk:
                    f["fim2col"] = pix * taps
            elif c == "conv" and cin < 8:
                # one input channel gathers differently from three (the im2col cost differs by ~2x)
                f.update({"stem_n": 1.0, f"stem_im2col_c{min(cin, 3)}": pix * taps, "stem_macs": n.macs,
                          "stem_out": out_n})
            elif c == "depthwise":
                f.update(pmacs_dw=pix * _up(cout, _DW_C) * taps, in_dw=in_n, out_dw=out_n)
                if n.attrs.get("act_dtype") == "uint8":  # uint8 depthwise runs a slower kernel
                    f["u8_dw_macs"] = n.macs
                if cout % _DW_VEC:
                    f["dw_unal"] = n.macs
            else:
                # a grouped convolution runs one GEMM per group, each padded on its own
                g = max(1, cin * math.prod(n.kernel) // max(1, taps)) if c == "conv" and n.kernel else 1
                g = g if g > 1 and cout % g == 0 and cin % g == 0 else 1
                narrow = c == "conv" and cout // g < _CONV_N
                f[f"narrow_{c}" if narrow else f"pmacs_{c}"] = pix * g * _up(cout // g, _CONV_N) * _up(taps, _CONV_K)
                if c == "conv" and n.attrs.get("act_dtype") == "uint8":  # uint8 x int8 runs another kernel
                    f["u8_pmacs"] = pix * g * _up(cout // g, _CONV_N) * _up(taps, _CONV_K)
                f[f"im2col_{c}"] = pix * taps
                f[f"out_{c}"] = pix * _up(cout, _CONV_N)
        else:
            f[f"elems_{c}"] = in_n + out_n
            if c == "pool" and n.kernel and math.prod(n.kernel) > 1 and "Max" not in n.op_type:
                f["pool_win"] = out_n * math.prod(n.kernel)  # a windowed average reads k x k per output
        out.append(f)
    if graph.source == "onnx" and any(n.attrs.get("act_dtype") for n in graph.nodes):
        _nhwc_runs(graph, out)
    return out


def _nhwc_runs(graph: OpGraph, feats: list[dict[str, float]]) -> None:
    """ONNX Runtime runs quantized convolutions and pools in NHWC and transposes at each end of a run of them:
    per run, a fixed cost (``nhwc_runs``) and the elements transposed in and out (``nhwc_edge``), booked on the
    run's first node. A float fallback (a fanned-out QDQ convolution), a dense layer or a reshape ends a run;
    element-wise adds do not."""
    start: int | None = None
    last_out = 0

    def close(i: int | None) -> None:
        if i is not None:
            feats[i]["nhwc_edge"] = feats[i].get("nhwc_edge", 0.0) + last_out

    for i, (n, f) in enumerate(zip(graph.nodes, feats, strict=True)):
        c = n.op.value
        nhwc = (c in ("conv", "depthwise") and "fmacs" not in f) or (c == "pool" and start is not None)
        if nhwc:
            outs = [graph.tensors[t].numel for t in n.outputs if t in graph.tensors]
            if start is None:
                start = i
                ins = [graph.tensors[t].numel for t in n.inputs if t in graph.tensors]
                f["nhwc_runs"] = 1.0
                f["nhwc_edge"] = float(ins[0]) if ins else 0.0
            last_out = outs[0] if outs else 0
        elif c != "add" and not n.op.is_alias:
            close(start)
            start = None
    close(start)


def graph_features(graph: OpGraph) -> dict[str, float]:
    """The graph's features summed over nodes, plus ``const`` (one per inference)."""
    total: dict[str, float] = {"const": 1.0}
    for f in node_features(graph):
        for k, v in f.items():
            total[k] = total.get(k, 0.0) + v
    return total


# The linear features a tree also reads (as log2(1 + value)): where a node sits in the NHWC runs, whether it
# falls back to float, which padded-GEMM regime it is in.
_TREE_LINEAR = ("nhwc_runs", "nhwc_edge", "fmacs", "fim2col", "narrow_conv", "pmacs_conv", "pmacs_dw", "im2col_conv",
                "out_conv", "stem_macs", "s8op_macs", "s8op_dw_macs", "u8_pmacs", "dw_unal", "u8_dw_macs", "pool_win")
TREE_PREFIX = "tree:"  # node observations carry the node's tree descriptors under these keys
TREE_DELTA_MS = 0.002  # the profiler's own time per node, taken off a node's profile time before the trees fit it


def tree_descriptors(graph: OpGraph, feats: list[dict[str, float]] | None = None) -> list[dict[str, float] | None]:
    """Per node the descriptors the per-node trees read (None for nodes of no :data:`TREE_CLASSES` class):
    :func:`chipfit.cost.nodecost.node_descriptors`, the log of the node's linear features, whether it reads a
    graph input, its input's spatial size and its position in the graph."""
    feats = node_features(graph) if feats is None else feats
    out: list[dict[str, float] | None] = []
    inputs = set(graph.inputs)
    for i, (n, d, f) in enumerate(zip(graph.nodes, node_descriptors(graph), feats, strict=True)):
        if d is None:
            out.append(None)
            continue
        r = dict(d)
        for k in _TREE_LINEAR:
            r[k] = math.log2(1.0 + f.get(k, 0.0))
        t = graph.tensors.get(n.inputs[0]) if n.inputs else None
        r["first"] = float(bool(n.inputs) and n.inputs[0] in inputs)
        r["in_pix_log2"] = math.log2(max(1, t.numel // max(1, t.shape[1]))) if t is not None and len(
            t.shape) > 1 else 0.0
        r["pos"] = float(i)
        out.append(r)
    return out


def _work_log2(x: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """A node's work (log2 of its MACs, or of its input elements when larger, e.g. a pool): the trees predict the
    time per unit of it, so they extrapolate as a constant cost per MAC beyond the probes' sizes."""
    f = list(features)
    return np.maximum(x[:, f.index("macs_log2")], x[:, f.index("in_log2")])


def fit_node_model(samples: Sequence[tuple[Mapping[str, float], float]], *, seed: int = 0) -> TreeEnsemble | None:
    """Gradient-boosted trees on per-node profile times: ``(descriptors, ms)`` pairs (descriptors as from
    :func:`tree_descriptors`); None with fewer than 50 samples."""
    rows = [(d, ms) for d, ms in samples if ms > 0]
    if len(rows) < 50:
        return None
    features = tuple(sorted(rows[0][0]))
    x = np.array([[float(d.get(k, 0.0)) for k in features] for d, _ in rows])
    ms = np.array([v for _, v in rows])
    y = np.log(np.maximum(ms - TREE_DELTA_MS, 5e-4)) - _work_log2(x, features) * math.log(2)
    # depth 6 (not 4) and a faster rate: cross-validated on 920 ordinary probes with 700 in training, held-out
    # ordinary CNNs within ±10% rose from 77% to 82% (and 400 trees of rate 0.1 matched 800 of 0.05)
    return fit_trees(x, y, features, n_estimators=400, max_depth=6, learning_rate=0.1, seed=seed)


def tree_node_ms(model: TreeEnsemble, graph: OpGraph, feats: list[dict[str, float]] | None = None) -> list[float]:
    """The trees' ms per node (0 for nodes they do not price)."""
    desc = tree_descriptors(graph, feats)
    idx = [i for i, d in enumerate(desc) if d is not None]
    out = [0.0] * len(desc)
    if not idx:
        return out
    x = np.array([[float(desc[i].get(k, 0.0)) for k in model.features] for i in idx])  # type: ignore[union-attr]
    pred = np.exp(model.predict(x) + _work_log2(x, model.features) * math.log(2))
    for i, v in zip(idx, pred, strict=True):
        out[i] = float(v)
    return out


@dataclass(frozen=True)
class FitStats:
    """In-sample quality of a fit (relative error of the prediction against the measurement)."""

    median_abs_error: float
    within_10: float
    within_20: float


@dataclass(frozen=True)
class Calibration:
    """Fitted cost per feature (ms per unit) for one target x runtime x dtype on one device."""

    target: str
    runtime: str
    dtype: str
    device: str
    scheme: str
    coefficients: Mapping[str, float]
    measurements: int
    estimator: str
    runtime_version: str = ""
    created: str = ""
    fit: FitStats | None = None
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    # the machine's speed when the probes were measured: the fixed reference workload's time beside them
    # (chipfit.measure.reference), the machine's quiet baseline then, and whether the machine was busy
    reference_ms: float | None = None
    reference_id: str = ""
    reference_baseline_ms: float | None = None
    busy: bool | None = None
    busy_reason: str = ""
    # optional per-node trees (TreeEnsemble.to_dict()) fitted to per-node profile times; the coefficient
    # ``trees`` scales their sum within the whole-network fit
    node_model: Mapping[str, Any] | None = None

    @functools.cached_property
    def trees(self) -> TreeEnsemble | None:
        """The per-node trees, or None (a linear feature-cost calibration)."""
        return TreeEnsemble.from_dict(self.node_model) if self.node_model else None

    def applies_to(self, target: str, runtime: str, dtype: str) -> bool:
        return (self.target, self.runtime, self.dtype) == (target, runtime, dtype) and self.scheme == SCHEME

    def reference_scale(self, reference_now_ms: float | None, *, tolerance: float = REFERENCE_TOLERANCE
                        ) -> tuple[float, str]:
        """How much slower (>1) or faster the machine runs the reference workload now than when this calibration
        was measured, and that check in words. Within ``tolerance`` the scale is 1 (not rescaled); without a
        reference on either side it is 1 and the words say the check could not be made.

        >>> cal = Calibration(target="host", runtime="onnxruntime", dtype="int8", device="d", scheme=SCHEME,
        ...                   coefficients={"const": 0.01}, measurements=3, estimator="min", reference_ms=0.2)
        >>> cal.reference_scale(0.25)[0], cal.reference_scale(0.201)[0]
        (1.25, 1.0)
        """
        if self.reference_ms is None or not reference_now_ms:
            why = "the calibration has no reference timing (its runtime timed none, or it predates them)" if \
                self.reference_ms is None else "no reference timing of this machine now"
            return 1.0, f"machine speed not checked: {why}"
        r = reference_now_ms / self.reference_ms
        said = (f"reference workload {self.reference_ms * 1e3:.0f} us at calibration, {reference_now_ms * 1e3:.0f} us "
                f"now")
        if abs(r - 1) <= tolerance:
            return 1.0, f"{said} (within {tolerance:.0%}: not rescaled)"
        return r, f"{said}: predictions rescaled x{r:.3f}"

    def node_ms(self, graph: OpGraph) -> list[float]:
        """Predicted ms per node (0 for alias nodes)."""
        c = self.coefficients
        feats = node_features(graph)
        lin = [sum(c.get(k, 0.0) * v for k, v in f.items()) for f in feats]
        if self.trees is None or not c.get("trees"):
            return lin
        return [a + c["trees"] * b for a, b in zip(lin, tree_node_ms(self.trees, graph, feats), strict=True)]

    def predict_ms(self, graph: OpGraph) -> float:
        return float(self.coefficients.get("const", 0.0) + sum(self.node_ms(graph)))

    def describe(self) -> str:
        fit = f", in-sample median error {self.fit.median_abs_error:.1%}" if self.fit else ""
        by = self.runtime_version or self.runtime
        nodes = f" + {self.extra['node_observations']} per-node profile times" if self.extra.get(
            "node_observations") else ""
        busy = " (taken while the machine was busy: " + self.busy_reason + ")" if self.busy else ""
        if self.trees is not None:
            nodes += (f"; per-node cost: linear feature costs + {len(self.trees.trees)} gradient-boosted trees fitted "
                      f"to those profile times (x{self.coefficients.get('trees', 0):.3g})")
        return (f"calibrated: {self.measurements} probe measurements ({self.estimator}){nodes} by {by} on "
                f"{self.device}, {self.created[:10]}{fit}{busy}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["coefficients"] = dict(self.coefficients)
        d["extra"] = dict(self.extra)
        d["node_model"] = dict(self.node_model) if self.node_model else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        from dataclasses import fields

        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["fit"] = FitStats(**kw["fit"]) if kw.get("fit") else None
        return cls(**kw)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        p = Path(path)
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as e:
            what = ("delete it to let the run calibrate again (its candidates were priced with it, so resume "
                    "then re-prices them)") if p.name == "calibration.json" else "delete it and run `chipfit " \
                "calibrate` again"
            raise MeasurementError(f"calibration file '{p}' is unreadable ({type(e).__name__}: {e}); {what}.") from None


# Runtime ops a profiler reports, matched in execution order to the graph's nodes of these classes.
_PROFILED = (
    (("conv", "depthwise"), ("QLinearConv", "Conv", "FusedConv", "NhwcFusedConv", "NchwcConv")),
    (("dense",), ("QGemm", "Gemm", "FusedGemm", "MatMul", "MatMulInteger", "QLinearMatMul")),
    (("pool",), ("QLinearGlobalAveragePool", "GlobalAveragePool", "QLinearAveragePool", "AveragePool", "MaxPool",
                 "NhwcMaxPool")),
)
# Costs a node profile cannot see (per-node fixed costs include the profiler's own; glue nodes are not mapped).
_UNPROFILED_PREFIXES = ("const", "nodes", "fnodes", "stem_n", "fio", "elems_")


ProfileEvent = tuple[str, float] | tuple[str, float, str]  # (runtime op, us) or (runtime op, us, node name)


def rescale_profile(events: Sequence[ProfileEvent], total_ms: float) -> list[ProfileEvent]:
    """A per-node profile scaled to the network's measured latency: each event's time beyond the profiler's own
    :data:`TREE_DELTA_MS` is multiplied by one factor, chosen so that those times sum to ``total_ms``.

    A profile is taken in one stretch of back-to-back runs, so a slow or fast moment of the machine moves all of
    its nodes together; the interleaved minimum (``measure_many``) is the stable level. On this VM two profiles
    of the same 60 ordinary CNNs, by two processes, agreed on a node's time within ±10 % for 54 % of the nodes
    (time-weighted mean |log ratio| 0.11); each scaled to one measurement of its network, 88 % (0.021). The
    profile then says how a network's time splits over its nodes, the measurement how much there is.

    >>> rescale_profile([("QLinearConv", 102.0, "a"), ("Add", 12.0, "b")], 0.055)
    [('QLinearConv', 52.0, 'a'), ('Add', 7.0, 'b')]
    """
    delta = TREE_DELTA_MS * 1e3
    own = [max(e[1] - delta, 0.0) for e in events]
    if not events or sum(own) <= 0 or not total_ms > 0:
        return list(events)
    s = total_ms * 1e3 / sum(own)
    return [(e[0], round(delta + o * s, 4), *e[2:]) for e, o in zip(events, own, strict=True)]  # type: ignore[misc]


def node_observations(graph: OpGraph, events: Sequence[ProfileEvent]) -> list[tuple[dict[str, float], float]]:
    """Pair the graph's MAC and pool nodes with a runtime profile's ``(op_name, us[, node_name])`` events: by node
    name where every node of a class has exactly one event of its name (the runtime may run side branches in
    another order than the file lists them), else in execution order; ``[]`` when the counts do not match (the
    runtime fused or split something this mapping does not know).
    Each observation's dict holds the node's linear features and, under ``tree:`` keys, its tree descriptors
    (:func:`tree_descriptors`)."""
    feats = node_features(graph)
    desc = tree_descriptors(graph, feats)
    both = [{**f, **{TREE_PREFIX + k: v for k, v in (d or {}).items()}} for f, d in zip(feats, desc, strict=True)]
    obs: list[tuple[dict[str, float], float]] = []
    for classes, ops in _PROFILED:
        nodes = [(n.name, f) for n, f in zip(graph.nodes, both, strict=True) if n.op.value in classes]
        evs = [e for e in events if e[0] in ops]
        if len(nodes) != len(evs):
            return []
        by_name = {e[2]: e[1] for e in evs if len(e) > 2}
        if len(by_name) == len(evs) and {name for name, _ in nodes} == set(by_name):
            times = [by_name[name] for name, _ in nodes]
        else:
            times = [e[1] for e in evs]
        obs += [(f, us / 1e3) for (_, f), us in zip(nodes, times, strict=True)]
    return obs


def _node_prior(keys: list[str], node_obs: Sequence[Sequence[tuple[dict[str, float], float]]]) -> np.ndarray | None:
    """Per-feature costs (ms per unit) fitted to per-node profile times; None without observations."""
    from scipy.optimize import nnls

    rows = [(f, ms) for probe in node_obs for f, ms in probe if ms > 0]
    if len(rows) < 10:
        return None
    x = np.array([[f.get(k, 0.0) for k in keys] for f, _ in rows])
    y = np.array([ms for _, ms in rows])
    scale = np.maximum(x.max(axis=0), 1e-12)
    c, _ = nnls((x / scale) / y[:, None], np.ones(len(y)), maxiter=50 * len(keys))
    return c / scale


def fit_calibration(graphs: Sequence[OpGraph], measured_ms: Sequence[float], *, target: str, runtime: str,
                    dtype: str, device: str, estimator: str, runtime_version: str = "", source: str = "",
                    node_obs: Sequence[Sequence[tuple[dict[str, float], float]]] | None = None,
                    prior_weight: float = 0.3, node_model: str = "linear",
                    weights: Sequence[float] | None = None) -> Calibration:
    """Fit feature costs to measurements by non-negative least squares on relative error.

    ``weights`` (one per graph, default 1) weigh each graph's squared relative error in the whole-network fit:
    :func:`chipfit.measure.calibrate.calibrate` gives its two probe families equal total weight, so that the
    more numerous one does not pull the shared feature costs its way.

    With ``node_obs`` (per-node profile times of the same probes, :func:`node_observations`) the per-MAC and
    per-element costs are first fitted to the nodes, and the whole-network fit is pulled toward them
    (ridge, ``prior_weight``): many node times inform what 50 totals alone leave loose.

    With ``node_model="trees"`` (and ``node_obs``) gradient-boosted trees are also fitted to the per-node
    profile times of the MAC and pool nodes (:func:`fit_node_model`); their sum over a network's nodes becomes
    one more column (``trees``) of the whole-network fit, next to the feature costs."""
    from scipy.optimize import nnls

    y = np.asarray(measured_ms, dtype=np.float64)
    if len(graphs) != len(y) or len(y) < 3:
        raise MeasurementError(f"a calibration needs >= 3 measured graphs, one latency each; given {len(graphs)} "
                               f"graphs and {len(y)} latencies.")
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        bad = [(i, float(v)) for i, v in enumerate(y) if not np.isfinite(v) or v <= 0][:5]
        raise MeasurementError(f"expected every measured latency to be a positive number; given (index, ms) {bad}. "
                               "Drop those measurements or measure again.")
    if node_model not in ("linear", "trees"):
        raise MeasurementError(f"node_model must be 'linear' or 'trees'; given {node_model!r}.")
    feats = [graph_features(g) for g in graphs]
    trees = None
    if node_model == "trees" and node_obs:
        samples = [({k[len(TREE_PREFIX):]: v for k, v in f.items() if k.startswith(TREE_PREFIX)}, ms)
                   for probe in node_obs for f, ms in probe]
        trees = fit_node_model([(d, ms) for d, ms in samples if d])
        if trees is not None:
            for g, f in zip(graphs, feats, strict=True):
                f["trees"] = float(sum(tree_node_ms(trees, g)))
    keys = sorted(set().union(*feats))
    x = np.array([[f.get(k, 0.0) for k in keys] for f in feats])
    scale = np.maximum(x.max(axis=0), 1e-12)  # column scaling keeps NNLS well conditioned
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != y.shape or np.any(~np.isfinite(w)) or np.any(w <= 0):
        raise MeasurementError(f"expected one positive weight per measured graph ({len(y)}); given "
                               f"{len(w)} weights (min {float(np.min(w)) if w.size else None}).")
    a, b = np.sqrt(w)[:, None] * (x / scale) / y[:, None], np.sqrt(w)
    prior = _node_prior(keys, node_obs) if node_obs else None
    n_nodes = sum(len(p) for p in node_obs or ())
    if prior is not None:
        pen, target_ = [], []
        for j, k in enumerate(keys):
            if k.startswith(_UNPROFILED_PREFIXES) or k == "trees":
                continue
            row = np.zeros(len(keys))
            p_scaled = prior[j] * scale[j]
            row[j] = np.sqrt(prior_weight) / p_scaled if p_scaled > 0 else np.sqrt(prior_weight)
            pen.append(row)
            target_.append(np.sqrt(prior_weight) if p_scaled > 0 else 0.0)
        if pen:
            a, b = np.vstack([a, np.array(pen)]), np.concatenate([b, target_])
    coef_scaled, _ = nnls(a, b, maxiter=50 * len(keys))
    coef = coef_scaled / scale
    rel = np.abs(x @ coef / y - 1)
    stats = FitStats(float(np.median(rel)), float(np.mean(rel <= 0.10)), float(np.mean(rel <= 0.20)))
    return Calibration(target=target, runtime=runtime, dtype=dtype, device=device, scheme=SCHEME,
                       coefficients={k: float(v) for k, v in zip(keys, coef, strict=True) if v > 0},
                       measurements=len(y), estimator=estimator, runtime_version=runtime_version,
                       created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), fit=stats, source=source,
                       extra=({"node_observations": n_nodes, "prior_weight": prior_weight} if prior is not None
                              else {}) | ({"tree_samples": n_nodes} if trees is not None else {}),
                       node_model=trees.to_dict() if trees is not None else None)


def reference_baseline_path() -> Path:
    """Where chipfit keeps the fastest time this machine has run the reference workload (the quiet machine)."""
    from chipfit.paths import cache_dir

    return cache_dir() / "reference-baseline.json"


def reference_key(device: str, runtime_version: str, reference_id: str) -> str:
    return f"{reference_id} | {runtime_version} | {device}"


def read_reference_baseline(key: str) -> dict[str, Any] | None:
    """The stored baseline record for ``key`` (``min_ms``, ``readings``, ``updated``), or None."""
    p = reference_baseline_path()
    try:
        rec = json.loads(p.read_text()).get(key) if p.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("min_ms"), int | float) else None


def record_reference(key: str, ms: float, *, keep: int = 50) -> dict[str, Any]:
    """Add one reference timing to the baseline store (the baseline is the fastest kept); returns the record."""
    p = reference_baseline_path()
    try:
        data = json.loads(p.read_text()) if p.is_file() else {}
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    rec = data.get(key) if isinstance(data.get(key), dict) else {}
    old = [float(x) for x in rec.get("readings", []) if isinstance(x, int | float)][-(keep - 1):]
    readings = [*old, float(ms)]
    rec = {"min_ms": min([float(rec.get("min_ms", ms)), float(ms)]), "readings": readings,
           "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    data[key] = rec
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{id(rec)}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(p)
    except OSError:
        pass  # a read-only cache: the baseline is not kept, the timing stands
    return rec


def calibration_path(target: str, runtime: str, dtype: str, device: str) -> Path:
    """Where the calibration for this target x runtime x dtype on ``device`` is cached."""
    import hashlib

    from chipfit.paths import cache_dir

    tag = hashlib.sha256(device.encode()).hexdigest()[:10]
    return cache_dir() / "calibrations" / f"{target}-{runtime}-{dtype}-{tag}.json"


def find_calibration(target: str, runtime: str, dtype: str, device: str | None = None) -> Calibration | None:
    """The cached calibration for this combination on ``device`` (``None``: the newest on any device, e.g. the
    board behind an agent), or None."""
    if device is not None:
        candidates = [calibration_path(target, runtime, dtype, device)]
    else:
        folder = calibration_path(target, runtime, dtype, "").parent
        candidates = sorted(folder.glob(f"{target}-{runtime}-{dtype}-*.json"), key=lambda q: q.stat().st_mtime,
                            reverse=True) if folder.is_dir() else []
    for p in candidates:
        if p.is_file():
            cal = Calibration.load(p)
            if cal.applies_to(target, runtime, dtype):
                return cal
    return None


@dataclass(frozen=True)
class CpiCalibration:
    """A real board's cycles per emulated instruction (``chipfit calibrate --serial``): the reference models'
    cycles measured on the board (DWT counter, or SysTick ticks x the clock) over their instructions on the
    emulated core, for the TFLM + CMSIS-NN firmware. It applies to ``target`` (or, without one, to every
    target with this ``core`` at this ``clock_mhz``) running ``runtime``, through the instruction path of the
    cost model (:mod:`chipfit.cost.instructions`)."""

    core: str
    clock_mhz: float
    cpi: float
    per_model: Mapping[str, float]
    runtime: str = "tflm-cmsis-nn"
    target: str = ""
    port: str = ""
    board: str = ""  # what the board's firmware answered to PING
    created: str = ""
    kind: str = "cpi"

    def describe(self) -> str:
        spread = (f", {min(self.per_model.values()):.3g}-{max(self.per_model.values()):.3g} over "
                  f"{', '.join(sorted(self.per_model))}") if self.per_model else ""
        return (f"measured on the board at {self.port or 'a serial port'} ({self.core} @ {self.clock_mhz:g} MHz, "
                f"chipfit calibrate --serial, {self.created or 'undated'}{spread})")

    def interval(self) -> tuple[float, float] | None:
        """None: the path's cross-validated interval (held-out network) applies."""
        return None

    def applies_to(self, target: str, core: str, runtime: str, clock_mhz: float) -> bool:
        return ((not self.target or self.target == target) and self.core == core and self.runtime == runtime
                and abs(self.clock_mhz - clock_mhz) < 1e-6)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> CpiCalibration:
        p = Path(path)
        try:
            d = json.loads(p.read_text())
            return cls(**{**d, "per_model": dict(d.get("per_model", {}))})
        except (OSError, ValueError, TypeError) as e:
            raise MeasurementError(f"a CPI calibration written by `chipfit calibrate --serial` at '{p}'; it is "
                                   f"unreadable ({type(e).__name__}: {e}). Delete it and calibrate again.") from None


CPI_RUN_FILE = "cpi_calibration.json"  # a run's copy of the board CPI it prices with (fixed for a resume)


def cpi_calibration_path(target: str, core: str, clock_mhz: float, runtime: str = "tflm-cmsis-nn") -> Path:
    """Where a board's CPI calibration is cached: per target name when given, else per core and clock."""
    from chipfit.paths import cache_dir

    who = target or f"{core}@{clock_mhz:g}MHz"
    return cache_dir() / "calibrations" / f"cpi-{who}-{runtime}.json"


def find_cpi_calibration(target: str, core: str, runtime: str, clock_mhz: float) -> CpiCalibration | None:
    """The board CPI calibration for ``target`` (first), else for its core at its clock, or None."""
    for p in (cpi_calibration_path(target, core, clock_mhz, runtime),
              cpi_calibration_path("", core, clock_mhz, runtime)):
        if p.is_file():
            cal = CpiCalibration.load(p)
            if cal.applies_to(target, core, runtime, clock_mhz):
                return cal
    return None
