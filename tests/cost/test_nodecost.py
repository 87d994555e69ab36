"""Per-node trees: the numpy evaluation of the stored arrays equals scikit-learn's, a calibration carrying trees
survives its JSON file, and trees fitted to per-node profile times price what the linear feature costs miss
(here: grouped convolutions that run slower per MAC than the padded-GEMM features say)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

from chipfit import create_target
from chipfit.cost.calibration import SCHEME, Calibration, fit_calibration, node_observations, tree_descriptors
from chipfit.cost.model import CostModel
from chipfit.cost.nodecost import NODE_FEATURES, TreeEnsemble, descriptor_matrix, fit_trees
from chipfit.graph.opgraph import Node, OpClass, OpGraph, TensorInfo


def _xy(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 8, size=(n, 5)).astype(float) + rng.normal(0, 0.1, size=(n, 5))
    y = np.sin(x[:, 0]) + 0.3 * x[:, 1] * (x[:, 2] > 3) + rng.normal(0, 0.05, n)
    return x, y


@pytest.mark.parametrize("model", [
    GradientBoostingRegressor(n_estimators=60, max_depth=4, learning_rate=0.1, random_state=0),
    GradientBoostingRegressor(n_estimators=30, max_depth=3, subsample=0.8, loss="huber", random_state=1),
    RandomForestRegressor(n_estimators=20, min_samples_leaf=2, random_state=0),
])
def test_numpy_evaluation_equals_scikit_learn(model):
    x, y = _xy()
    model.fit(x, y)
    ens = TreeEnsemble.from_sklearn(model, [f"f{i}" for i in range(5)])
    xt, _ = _xy(200, seed=1)
    np.testing.assert_allclose(ens.predict(xt), model.predict(xt), rtol=1e-9, atol=1e-9)
    # thresholds hit exactly go left, as in scikit-learn
    t = ens.trees[0]
    edge = xt[:5].copy()
    edge[:, t["feature"][0]] = t["threshold"][0]
    np.testing.assert_allclose(ens.predict(edge), model.predict(edge), rtol=1e-9, atol=1e-9)


def test_tree_ensemble_json_round_trip():
    x, y = _xy()
    ens = fit_trees(x, y, [f"f{i}" for i in range(5)], n_estimators=40)
    back = TreeEnsemble.from_dict(json.loads(json.dumps(ens.to_dict())))
    assert back.features == ens.features and len(back.trees) == 40
    np.testing.assert_array_equal(back.predict(x), ens.predict(x))
    empty = TreeEnsemble(features=("a",), init=1.5, learning_rate=0.1, trees=())
    assert empty.predict(np.zeros((3, 1))).tolist() == [1.5, 1.5, 1.5]


def _conv_graph(cin: int, cout: int, groups: int, size: int, name: str = "g") -> OpGraph:
    t = {"x": TensorInfo((1, cin, size, size), "int8"), "y": TensorInfo((1, cout, size, size), "int8")}
    macs = size * size * cout * 9 * cin // groups
    node = Node("c", OpClass.CONV, "Conv", ("x",), ("y",), macs=macs, weights=cout * cin // groups * 9,
                kernel=(3, 3), stride=(1, 1), attrs={"act_dtype": "int8", "quant": "qdq"})
    return OpGraph(name, (node,), t, ("x",), ("y",))


def _node_ms(g: OpGraph) -> float:
    """The 'runtime': 1 ns per MAC, and a grouped convolution runs 4x slower per MAC (plus 2 us of profiler)."""
    n = g.nodes[0]
    groups = 2 ** tree_descriptors(g)[0]["groups_log2"]  # type: ignore[index]
    return 1e-6 * n.macs * (4.0 if groups > 1 else 1.0)


@pytest.fixture(scope="module")
def grouped_probes():
    rng = np.random.default_rng(0)
    graphs = []
    for i in range(80):
        g = int(rng.choice([1, 1, 2, 4, 8]))
        cin, cout = g * int(rng.integers(2, 12)), g * int(rng.integers(2, 12))
        graphs.append(_conv_graph(cin, cout, g, int(rng.choice([8, 16, 24, 32])), name=f"p{i}"))
    y = [0.01 + _node_ms(g) for g in graphs]
    obs = [node_observations(g, [("Conv", (_node_ms(g) + 0.002) * 1e3)]) for g in graphs]
    return graphs, y, obs


def test_node_observations_carry_tree_descriptors(grouped_probes):
    graphs, _, obs = grouped_probes
    f, ms = obs[0][0]
    assert ms > 0.002 and f["tree:cin"] == graphs[0].tensors["x"].shape[1]
    assert {"tree:" + k for k in NODE_FEATURES} <= set(f)


def test_trees_price_grouped_convolutions_the_linear_costs_miss(grouped_probes, tmp_path):
    graphs, y, obs = grouped_probes
    kw = {"target": "host", "runtime": "onnxruntime", "dtype": "int8", "device": "d", "estimator": "min",
          "node_obs": obs}
    linear = fit_calibration(graphs, y, **kw)
    trees = fit_calibration(graphs, y, **kw, node_model="trees")
    assert linear.trees is None and trees.trees is not None and trees.coefficients["trees"] > 0
    assert trees.extra["tree_samples"] == 80 and "gradient-boosted trees" in trees.describe()
    unseen = [_conv_graph(cin, cout, g, s) for cin, cout, g, s in ((32, 48, 4, 20), (24, 24, 2, 28), (40, 40, 8, 12))]
    truth = np.array([0.01 + _node_ms(g) for g in unseen])
    p_lin = np.array([linear.predict_ms(g) for g in unseen])
    p_tree = np.array([trees.predict_ms(g) for g in unseen])
    assert np.all(p_tree > p_lin)  # the grouped convolutions are priced higher, as their profile times say
    assert np.all(np.abs(p_tree / truth - 1) < np.abs(p_lin / truth - 1))
    assert np.all(np.abs(p_tree / truth - 1) < 0.25)
    # the calibration file keeps the trees as arrays (no pickle) and predicts the same after loading
    path = trees.save(tmp_path / "cal.json")
    raw = json.loads(path.read_text())
    assert raw["scheme"] == SCHEME and raw["node_model"]["trees"][0]["left"]
    back = Calibration.load(path)
    assert back.applies_to("host", "onnxruntime", "int8")
    np.testing.assert_allclose([back.predict_ms(g) for g in unseen], p_tree, rtol=1e-12)
    # the cost model prices the layers with the trees: layers + const = the prediction
    cm = CostModel(calibrations=[back], auto_calibration=False)
    cost = cm.estimate(unseen[0], create_target("host"))
    assert cost.latency_ms == pytest.approx(p_tree[0]) and cost.predicted_by == "calibrated"
    assert sum(la.latency_ms for la in cost.layers) == pytest.approx(p_tree[0] - back.coefficients.get("const", 0))
    assert "gradient-boosted trees" in cost.efficiency_source


def test_older_schemes_are_refit_and_unknown_node_models_refused(grouped_probes):
    from chipfit.errors import MeasurementError

    graphs, y, _ = grouped_probes
    old = Calibration(target="host", runtime="onnxruntime", dtype="int8", device="d", scheme="cpu-features-v5",
                      coefficients={"const": 0.01}, measurements=3, estimator="min")
    assert not old.applies_to("host", "onnxruntime", "int8")
    with pytest.raises(MeasurementError, match="node_model"):
        fit_calibration(graphs, y, target="host", runtime="onnxruntime", dtype="int8", device="d", estimator="min",
                        node_model="forest")
    # without per-node observations there is nothing to fit trees to: the linear feature costs stand
    cal = fit_calibration(graphs, y, target="host", runtime="onnxruntime", dtype="int8", device="d",
                          estimator="min", node_model="trees")
    assert cal.trees is None and "trees" not in cal.coefficients


def test_descriptors_cover_only_priced_classes():
    g = _conv_graph(16, 32, 4, 8)
    d = tree_descriptors(g)[0]
    assert d is not None and d["groups_log2"] == 2.0 and d["cin_g"] == 4.0 and d["first"] == 1.0
    assert descriptor_matrix([d]).shape == (1, len(NODE_FEATURES))
