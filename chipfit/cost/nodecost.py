"""A non-linear per-node latency model (nn-Meter style): gradient-boosted regression trees on a node's
descriptors (op class, QDQ or QOperator, int8 or uint8 activations, MACs, bytes, kernel, stride, groups,
channel counts and their alignment, spatial size, 1-D or 2-D) predicting the log of the node's time in a
runtime's per-node profile. The trees are fitted with scikit-learn when calibrating and kept as plain arrays
(:class:`TreeEnsemble`), so a calibration stays a JSON file and is evaluated with numpy alone.

>>> ens = TreeEnsemble(features=("macs_log2",), init=0.0, learning_rate=1.0,
...                    trees=({"feature": [0, -2, -2], "threshold": [10.0, -2.0, -2.0], "left": [1, -1, -1],
...                            "right": [2, -1, -1], "value": [0.0, -1.0, 1.0]},))
>>> ens.predict(np.array([[5.0], [12.0]])).tolist()
[-1.0, 1.0]
"""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chipfit.graph.opgraph import OpGraph

# Op classes whose nodes a runtime profile times one by one (the trees price these; the rest stay linear).
TREE_CLASSES = ("conv", "depthwise", "dense", "pool")
_CLASS_ID = {c: float(i) for i, c in enumerate(TREE_CLASSES)}

NODE_FEATURES: tuple[str, ...] = (
    "cls", "qoperator", "u8", "fans", "one_d", "stem", "macs_log2", "in_log2", "out_log2", "weights_log2",
    "kernel", "kh", "kw", "stride", "groups_log2", "cin", "cout", "cin_g", "cout_g", "cin_mod8", "cout_mod16",
    "cout_g_mod16", "pix_log2", "global_pool", "max_pool", "macs_per_out_log2",
)


def _lg(x: float) -> float:
    return math.log2(max(1.0, float(x)))


def node_descriptors(graph: OpGraph) -> list[dict[str, float] | None]:
    """Per node (in graph order) the descriptors the trees read, for nodes of :data:`TREE_CLASSES`; None for
    the others.

    >>> from chipfit.graph.opgraph import Node, OpClass, OpGraph, TensorInfo
    >>> t = {"x": TensorInfo((1, 8, 16, 16)), "y": TensorInfo((1, 16, 16, 16))}
    >>> g = OpGraph("g", (Node("c", OpClass.CONV, "Conv", ("x",), ("y",), macs=16 * 16 * 16 * 72, weights=1152,
    ...                        kernel=(3, 3), stride=(1, 1)),), t, ("x",), ("y",))
    >>> d = node_descriptors(g)[0]
    >>> d["cin"], d["cout"], d["kernel"], d["groups_log2"]
    (8.0, 16.0, 9.0, 0.0)
    """
    consumers = collections.Counter(t for n in graph.nodes for t in n.inputs)
    for t in graph.outputs:
        consumers[t] += 1
    out: list[dict[str, float] | None] = []
    for n in graph.nodes:
        c = n.op.value
        if c not in _CLASS_ID:
            out.append(None)
            continue
        outs = [graph.tensors[t] for t in n.outputs if t in graph.tensors]
        ins = [graph.tensors[t] for t in n.inputs if t in graph.tensors]
        out_n, in_n = sum(t.numel for t in outs), sum(t.numel for t in ins)
        cout = outs[0].shape[1] if outs and len(outs[0].shape) > 1 else 1
        cin = ins[0].shape[1] if ins and len(ins[0].shape) > 1 else 1
        pix = max(1, out_n // max(1, cout))
        kernel = math.prod(n.kernel) if n.kernel else 1
        g = 1
        if c == "depthwise":
            g = cin
        elif c == "conv" and n.kernel and n.macs:
            taps = n.macs // max(1, pix * cout)
            g = max(1, cin * kernel // max(1, taps))
            g = g if cout % g == 0 and cin % g == 0 else 1
        qop = n.op_type.startswith("QLinear") or n.attrs.get("quant") == "qoperator"
        u8 = n.attrs.get("act_dtype") == "uint8"
        fans = c != "dense" and c != "pool" and not qop and not u8 and bool(n.inputs) and (
            consumers[n.inputs[0]] > 1 or consumers[n.outputs[0]] > 1)
        one_d = bool(outs) and len(outs[0].shape) == 3
        k = tuple(n.kernel) if n.kernel else (1,)
        out.append({
            "cls": _CLASS_ID[c], "qoperator": float(qop), "u8": float(u8), "fans": float(fans),
            "one_d": float(one_d), "stem": float(c == "conv" and cin < 8), "macs_log2": _lg(n.macs),
            "in_log2": _lg(in_n), "out_log2": _lg(out_n), "weights_log2": _lg(n.weights), "kernel": float(kernel),
            "kh": float(k[0]), "kw": float(k[-1]), "stride": float(max(n.stride) if n.stride else 1),
            "groups_log2": _lg(g), "cin": float(cin), "cout": float(cout), "cin_g": float(cin // g),
            "cout_g": float(cout // g), "cin_mod8": float(cin % 8), "cout_mod16": float(cout % 16),
            "cout_g_mod16": float((cout // g) % 16), "pix_log2": _lg(pix),
            "global_pool": float(c == "pool" and "Global" in n.op_type),
            "max_pool": float(c == "pool" and "Max" in n.op_type),
            "macs_per_out_log2": _lg(n.macs / max(1, out_n)) if n.macs else _lg(in_n / max(1, out_n)),
        })
    return out


def descriptor_matrix(rows: Sequence[Mapping[str, float]], features: Sequence[str] = NODE_FEATURES) -> np.ndarray:
    """The descriptors as a matrix, one row per node, columns in ``features`` order."""
    return np.array([[float(r.get(f, 0.0)) for f in features] for r in rows], dtype=np.float64).reshape(
        len(rows), len(features))


@dataclass(frozen=True)
class TreeEnsemble:
    """Additive regression trees kept as arrays (scikit-learn's ``tree_`` layout): the prediction is
    ``init + learning_rate * sum(tree(x))``; a leaf has ``left == -1`` and its ``value``."""

    features: tuple[str, ...]
    init: float
    learning_rate: float
    trees: tuple[Mapping[str, Sequence[float]], ...]
    target: str = "log(ms)"

    @functools.cached_property
    def _packed(self) -> tuple[np.ndarray, ...]:
        """The trees as (trees x nodes) arrays, padded with leaves: feature, threshold, left, right, value."""
        width = max((len(t["value"]) for t in self.trees), default=1)
        out = [np.zeros((len(self.trees), width), dtype=dt) for dt in (np.int64, np.float64, np.int64, np.int64,
                                                                       np.float64)]
        out[2][:] = -1
        out[3][:] = -1
        for i, t in enumerate(self.trees):
            for a, k in zip(out, ("feature", "threshold", "left", "right", "value"), strict=True):
                a[i, :len(t[k])] = t[k]
        out[0][out[0] < 0] = 0  # leaves' feature is never read
        return tuple(out)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for the rows of ``x`` (columns in :attr:`features` order). Like scikit-learn, the inputs are
        compared in float32 (a value at a threshold goes the way scikit-learn sends it)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, len(self.features)).astype(np.float32).astype(np.float64)
        if not self.trees:
            return np.full(len(x), self.init)
        feat, thr, left, right, value = self._packed
        t = np.arange(len(self.trees))[None, :]
        rows = np.arange(len(x))[:, None]
        node = np.zeros((len(x), len(self.trees)), dtype=np.int64)
        while True:
            nl = left[t, node]
            inner = nl >= 0
            if not inner.any():
                break
            go_left = x[rows, feat[t, node]] <= thr[t, node]
            node = np.where(inner, np.where(go_left, nl, right[t, node]), node)
        return self.init + self.learning_rate * value[t, node].sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "init": self.init, "learning_rate": self.learning_rate,
                "target": self.target, "trees": [{k: list(v) for k, v in t.items()} for t in self.trees]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TreeEnsemble:
        return cls(features=tuple(d["features"]), init=float(d["init"]), learning_rate=float(d["learning_rate"]),
                   trees=tuple({k: list(v) for k, v in t.items()} for t in d["trees"]),
                   target=str(d.get("target", "log(ms)")))

    @classmethod
    def from_sklearn(cls, model: Any, features: Sequence[str]) -> TreeEnsemble:
        """From a fitted ``GradientBoostingRegressor`` (constant initial estimator) or ``RandomForestRegressor``."""
        if hasattr(model, "estimators_") and hasattr(model, "learning_rate"):  # gradient boosting
            init = float(np.ravel(model.init_.constant_)[0]) if hasattr(model.init_, "constant_") else float(
                model._raw_predict_init(np.zeros((1, len(features))))[0, 0])
            ests, lr = [e[0] for e in model.estimators_], float(model.learning_rate)
        else:  # a forest: the mean of its trees
            ests = list(model.estimators_)
            init, lr = 0.0, 1.0 / len(ests)
        trees = []
        for e in ests:
            t = e.tree_
            trees.append({"feature": [int(v) for v in t.feature], "threshold": [float(v) for v in t.threshold],
                          "left": [int(v) for v in t.children_left], "right": [int(v) for v in t.children_right],
                          "value": [float(v) for v in t.value[:, 0, 0]]})
        return cls(features=tuple(features), init=init, learning_rate=lr, trees=tuple(trees))


def fit_trees(x: np.ndarray, y: np.ndarray, features: Sequence[str] = NODE_FEATURES, *, n_estimators: int = 300,
              max_depth: int = 4, learning_rate: float = 0.05, seed: int = 0) -> TreeEnsemble:
    """Gradient-boosted trees fitted to ``y`` (log ms per node) from descriptor rows ``x``."""
    from sklearn.ensemble import GradientBoostingRegressor

    m = GradientBoostingRegressor(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate,
                                  subsample=0.8, min_samples_leaf=3, random_state=seed, loss="huber")
    m.fit(x, y)
    return TreeEnsemble.from_sklearn(m, features)
