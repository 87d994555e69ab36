"""Calibration: the fit recovers known feature costs, the cost model uses a calibration only where it applies,
``chipfit calibrate`` saves one that ``profile --target host`` then uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from chipfit import create_target, profile
from chipfit.cost.calibration import Calibration, find_calibration, fit_calibration, graph_features, node_features
from chipfit.cost.model import CostModel
from chipfit.errors import MeasurementError, UsageError
from chipfit.measure.base import host_device
from chipfit.measure.calibrate import calibrate
from chipfit.measure.fake import FakeRuntime
from chipfit.measure.probes import make_probes


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    return make_probes(24, tmp_path_factory.mktemp("probes"), seed=3)


def test_fit_recovers_known_feature_costs(probes):
    graphs = [p.graph for p in probes]
    feats = [graph_features(g) for g in graphs]
    keys = sorted(set().union(*feats))
    rng = np.random.default_rng(0)
    truth = {k: float(rng.uniform(1e-9, 1e-6)) * (1e3 if k.startswith(("nodes", "const", "stem_n", "fnodes")) else 1)
             for k in keys}
    y = [sum(truth[k] * v for k, v in f.items()) for f in feats]
    cal = fit_calibration(graphs, y, target="host", runtime="onnxruntime", dtype="int8", device="d",
                          estimator="exact")
    pred = np.array([cal.predict_ms(g) for g in graphs])
    np.testing.assert_allclose(pred, y, rtol=1e-4)
    assert cal.fit is not None and cal.fit.within_10 == 1.0


def test_weights_pull_the_fit_toward_the_heavier_graphs(probes):
    """Two families that disagree (here the second runs 30 % slower): the fit leans toward whichever weighs more,
    which is how calibrate keeps 2500 ordinary probes from outvoting 200 from the search spaces."""
    graphs = [p.graph for p in probes]
    feats = [graph_features(g) for g in graphs]
    keys = sorted(set().union(*feats))
    truth = {k: 1e-7 * (1e3 if k.startswith(("nodes", "const", "stem_n", "fnodes")) else 1) for k in keys}
    half = len(graphs) // 2
    y = [sum(truth[k] * v for k, v in f.items()) * (1.0 if i < half else 1.3) for i, f in enumerate(feats)]

    def err_first(weights):
        cal = fit_calibration(graphs, y, target="host", runtime="onnxruntime", dtype="int8", device="d",
                              estimator="exact", weights=weights)
        return float(np.median([abs(cal.predict_ms(g) / v - 1) for g, v in zip(graphs[:half], y[:half],
                                                                               strict=True)]))

    light, even, heavy = (err_first([w] * half + [1.0] * (len(graphs) - half)) for w in (0.1, 1.0, 10.0))
    assert heavy < even < light
    with pytest.raises(MeasurementError, match="one positive weight per measured graph"):
        fit_calibration(graphs, y, target="host", runtime="onnxruntime", dtype="int8", device="d",
                        estimator="exact", weights=[1.0] * (len(graphs) - 1) + [0.0])


def test_fit_rejects_bad_measurements(probes):
    graphs = [p.graph for p in probes[:4]]
    with pytest.raises(MeasurementError, match="positive"):
        fit_calibration(graphs, [1.0, 0.0, 1.0, 1.0], target="host", runtime="onnxruntime", dtype="int8",
                        device="d", estimator="min")
    with pytest.raises(MeasurementError, match=">= 3"):
        fit_calibration(graphs[:2], [1.0, 1.0], target="host", runtime="onnxruntime", dtype="int8", device="d",
                        estimator="min")


def test_node_features_see_fan_out_convolutions_and_stems(probes):
    for p in probes:
        feats = node_features(p.graph)
        assert len(feats) == len(p.graph.nodes)
        convs = [f for n, f in zip(p.graph.nodes, feats, strict=True) if n.op.value == "conv"]
        if p.config.family == "mbv2":  # residual blocks: their convolutions run in float in ONNX Runtime
            assert any("fmacs" in f for f in convs)
        first = convs[0] if convs else {}
        if p.graph.tensors[p.graph.inputs[0]].shape[1] < 4 and first and "fmacs" not in first:
            assert any(k.startswith("stem_im2col_c") for k in first)


def test_cost_model_uses_a_calibration_only_where_it_applies(probes):
    graphs = [p.graph for p in probes]
    y = [0.01 + 1e-7 * g.macs for g in graphs]
    cal = fit_calibration(graphs, y, target="host", runtime="onnxruntime", dtype="int8", device="d",
                          estimator="min")
    host = create_target("host")
    cm = CostModel(calibrations=[cal], auto_calibration=False)
    g = graphs[0]
    cost = cm.estimate(g, host)
    assert cost.latency_ms == pytest.approx(cal.predict_ms(g))
    assert sum(layer.latency_ms for layer in cost.layers) == pytest.approx(cost.latency_ms - cal.coefficients.get(
        "const", 0.0))
    assert cost.efficiency_source.startswith("calibrated: 24 probe measurements") and cost.source == "predicted"
    assert cost.basis.endswith("(calibrated)")
    # another dtype or another target keeps the analytical model
    assert not cm.estimate(g, host, dtype="float32").efficiency_source.startswith("calibrated")
    assert not cm.estimate(g, create_target("stm32h743")).efficiency_source.startswith("calibrated")


def test_calibrate_saves_a_calibration_that_profile_uses(tmp_path, monkeypatch, probes):
    monkeypatch.setenv("CHIPFIT_CACHE_DIR", str(tmp_path))
    model = probes[0].path
    before = profile(model, target="host").cost
    assert not before.efficiency_source.startswith("calibrated")
    fake = FakeRuntime(device=f"host: {host_device()}")  # stands in for ONNX Runtime on this machine
    cal = calibrate("host", runtime=fake, probes=8, workdir=tmp_path / "probes")
    assert find_calibration("host", "onnxruntime", "int8", cal.device) == cal
    after = profile(model, target="host").cost
    assert after.efficiency_source.startswith(cal.describe())  # then the machine-speed check
    assert after.latency_ms == pytest.approx(cal.predict_ms(probes[0].graph))


def test_calibrating_a_board_needs_its_agent():
    with pytest.raises(UsageError, match="chipfit agent"):
        calibrate("stm32h743", probes=5)


def test_corrupt_calibration_file_says_what_to_do(tmp_path):
    p = tmp_path / "cal.json"
    p.write_text("{not json")
    with pytest.raises(MeasurementError, match="chipfit calibrate"):
        Calibration.load(p)
    p.write_text(json.dumps({"target": "host"}))
    with pytest.raises(MeasurementError, match="unreadable"):
        Calibration.load(p)


def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    import os
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "chipfit.cli", *args], capture_output=True, text=True,
                       env={**os.environ, **env}, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_cli_calibrate_then_profile_gives_the_calibrated_prediction_labelled(tmp_path, probes):
    env = {"CHIPFIT_CACHE_DIR": str(tmp_path)}
    # --allow-busy: the suite keeps this machine busy (busy detection has its own tests, tests/measure/test_busy.py)
    rc, out, err = _cli("calibrate", "--target", "host", "--probes", "5", "--json", "--allow-busy", env=env)
    assert rc == 0, err
    cal = json.loads(out)
    assert cal["measurements"] == 5 and cal["runtime"] == "onnxruntime" and cal["device"].startswith("host: ")
    assert (tmp_path / "calibrations").is_dir() and json.loads(Path(cal["path"]).read_text())["coefficients"]
    rc, out, err = _cli("profile", str(probes[0].path), "--target", "host", "--json", env=env)
    assert rc == 0, err
    prof = json.loads(out)
    assert prof["source"] == "predicted" and prof["efficiency_source"].startswith("calibrated: 5 probe measurements")
    expected = Calibration.from_dict({k: v for k, v in cal.items() if k != "path"}).predict_ms(probes[0].graph)
    # a calibration taken on a busy machine is rescaled to the machine's quiet speed, and says by how much
    scale = re.search(r"rescaled x([0-9.]+)", prof["efficiency_source"])
    assert prof["latency_ms"] == pytest.approx(expected * (float(scale.group(1)) if scale else 1.0), rel=2e-3)
    srcs = prof["figure_sources"]
    assert srcs["latency_ms"].startswith("predicted for onnxruntime on host") and "calibrated" in srcs["latency_ms"]
    assert all(v.startswith(("predicted", "counted")) for v in srcs.values())
    rc, out, err = _cli("measure", str(probes[0].path), "--json", env=env)
    assert rc == 0, err
    m = json.loads(out)
    assert m["source"] == "measured" and m["latency_ms"] > 0 and "onnxruntime" in m["runtime"]


def test_cli_calibrate_refuses_what_it_cannot_calibrate(tmp_path):
    env = {"CHIPFIT_CACHE_DIR": str(tmp_path)}
    rc, _, err = _cli("calibrate", "--target", "rpi5.onnxruntime", "--probes", "5", env=env)
    assert rc == 2 and "chipfit agent" in err and "Traceback" not in err  # a board needs its agent
    rc, _, err = _cli("calibrate", "--target", "stm32h743", "--probes", "5", env=env)
    assert rc == 2 and "ONNX Runtime" in err and "Traceback" not in err  # probes run on ONNX Runtime only
    rc, _, err = _cli("calibrate", "--target", "host", "--agent", "http://127.0.0.1:9", "--token-file", "x", env=env)
    assert rc == 2 and "this machine" in err


def test_probes_beyond_a_runtime_batch_limit_are_measured_in_anchored_batches(probes):
    import dataclasses

    from chipfit.measure.calibrate import measure_probes

    class Drifting(FakeRuntime):
        """Takes 6 models per call, and gets 20 % slower with every call (a drifting device)."""

        calls = 0

        def max_batch(self):
            return 6

        def measure_many(self, artifacts, inputs=None, **kw):
            self.calls += 1
            ms = super().measure_many(artifacts, inputs, **kw)
            assert len(ms) <= 6
            return [dataclasses.replace(m, latency_ms=m.latency_ms * 1.2 ** self.calls) for m in ms]

    paths = [p.path for p in probes[:14]]
    rt = Drifting()
    got = [m.latency_ms for m in measure_probes(rt, paths)]
    truth = [m.latency_ms * 1.2 for m in FakeRuntime().measure_many(paths)]  # the first batch's scale
    assert rt.calls == 3  # 2 anchors + 4 new probes per call: 6, then 4, then 4 new
    np.testing.assert_allclose(got, truth, rtol=1e-9)


def test_a_model_declaring_a_huge_input_is_refused_before_anything_allocates():
    from onnx import TensorProto, helper

    from chipfit.measure.modelfile import inspect_model_bytes

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2_000_000_000])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2_000_000_000])])
    with pytest.raises(MeasurementError, match="input elements"):
        inspect_model_bytes(helper.make_model(g).SerializeToString(), name="huge.onnx")


def test_ort_node_profiles_map_onto_the_graph_and_inform_the_fit(probes):
    from chipfit.cost.calibration import node_observations
    from chipfit.measure.local import OrtRuntime
    from chipfit.measure.modelfile import inspect_model

    rt = OrtRuntime()
    obs = [node_observations(p.graph, rt.profile_nodes(inspect_model(p.path), runs=20)) for p in probes[:8]]
    mapped = [o for o in obs if o]
    assert len(mapped) >= 6  # the QDQ fusions chipfit's spaces produce are all known to the mapping
    for p, o in zip(probes[:8], obs, strict=True):
        if o:
            macs_nodes = [n for n in p.graph.nodes if n.op.value in ("conv", "depthwise", "dense", "pool")]
            assert len(o) == len(macs_nodes) and all(ms > 0 for _, ms in o)
    assert node_observations(probes[0].graph, [("QLinearConv", 3.0)]) == []  # counts differ: nothing is guessed
    graphs = [p.graph for p in probes[:8]]
    y = [0.02 + 1e-7 * g.macs for g in graphs]
    cal = fit_calibration(graphs, y, target="host", runtime="onnxruntime", dtype="int8", device="d",
                          estimator="min", node_obs=obs)
    assert cal.extra["node_observations"] == sum(len(o) for o in obs)
    assert "per-node profile times" in cal.describe()
    plain = fit_calibration(graphs, y, target="host", runtime="onnxruntime", dtype="int8", device="d",
                            estimator="min")
    assert plain.coefficients != cal.coefficients and not plain.extra


def test_node_profiles_map_by_name_where_the_runtime_runs_branches_in_another_order(probes):
    """ONNX Runtime may run a residual block's shortcut before its body; its events carry the node names, so each
    time lands on its own node (an older agent's nameless events still map in execution order)."""
    from chipfit.cost.calibration import node_observations

    g = next(p.graph for p in probes if sum(n.op.value in ("conv", "depthwise") for n in p.graph.nodes) >= 3)
    convs = [n for n in g.nodes if n.op.value in ("conv", "depthwise")]
    ev: list = [("QLinearConv", 10.0 * (i + 1), n.name) for i, n in enumerate(convs)][::-1]
    ev += [("QGemm" if n.op.value == "dense" else "AveragePool", 1.0, n.name) for n in g.nodes
           if n.op.value in ("dense", "pool")]
    want = [0.01 * (i + 1) for i in range(len(convs))]
    assert [ms for _, ms in node_observations(g, ev)[:len(convs)]] == pytest.approx(want)
    assert [ms for _, ms in node_observations(g, [e[:2] for e in ev])[:len(convs)]] == pytest.approx(want[::-1])
    renamed = [(op, us, "other") if op == "QLinearConv" else (op, us, n) for op, us, n in ev]
    assert [ms for _, ms in node_observations(g, renamed)[:len(convs)]] == pytest.approx(want[::-1])


def test_the_probe_count_defaults_agree():
    """``calibrate()``, ``chipfit calibrate`` and a contract's in-run calibration take the same number of probes."""
    import inspect

    from chipfit.cli import calibrate_cmd
    from chipfit.contract.schema import MeasureSettings
    from chipfit.measure.calibrate import DEFAULT_PROBES, calibrate

    assert MeasureSettings().calibration_probes == DEFAULT_PROBES
    assert inspect.signature(calibrate_cmd).parameters["probes"].default == DEFAULT_PROBES
    assert inspect.signature(calibrate).parameters["probes"].default == DEFAULT_PROBES


def test_profiles_are_scaled_to_their_probes_measured_latency(probes):
    """A profile taken at a slow moment moves every node of it; scaled to the probe's interleaved measurement, the
    tree samples keep the profile's split and take the measurement's level, whichever moment it was taken at."""
    from chipfit.cost.calibration import TREE_DELTA_MS, rescale_profile
    from chipfit.measure.calibrate import profile_probes

    class _Profiler(FakeRuntime):
        slow = 1.0

        def profile_many(self, artifacts, *, seed=0):
            return [[(("QLinearConv" if n.op.value in ("conv", "depthwise") else "QGemm" if n.op.value == "dense"
                       else "AveragePool"), 2.0 + self.slow * 10.0 * (i + 1), n.name)
                     for i, n in enumerate(n for n in p.graph.nodes if n.op.value in
                                           ("conv", "depthwise", "dense", "pool"))] for p in probes[:4]]

    rt = _Profiler()
    totals = [0.5, 0.4, 0.3, 0.2]
    quiet = profile_probes(rt, probes[:4], totals_ms=totals)
    rt.slow = 1.7
    slow = profile_probes(rt, probes[:4], totals_ms=totals)
    raw = profile_probes(rt, probes[:4])
    assert quiet and slow and all(quiet)
    for q, s, r, total in zip(quiet, slow, raw, totals, strict=True):
        assert [ms for _, ms in s] == pytest.approx([ms for _, ms in q])  # the slow moment is gone
        assert sum(ms - TREE_DELTA_MS for _, ms in q) == pytest.approx(total)
        assert [ms for _, ms in r] != pytest.approx([ms for _, ms in q])
    assert rescale_profile([], 1.0) == [] and rescale_profile([("Conv", 1.0)], 0.0) == [("Conv", 1.0)]


def test_pick_configs_names_what_make_probes_builds(tmp_path):
    from chipfit.measure.probes import pick_configs, sample_configs

    picked = pick_configs(3, seed=5, design="cover", pool=12)
    built = make_probes(3, tmp_path, seed=5, dtype="float32", design="cover", pool=12)
    assert [(s, c.key) for s, _, c in picked] == [(p.space, p.config.key) for p in built]
    pool = {(s, c.key) for s, _, c in sample_configs(12, 5)}
    assert {(s, c.key) for s, _, c in picked} <= pool
    assert [c.key for _, _, c in pick_configs(4, seed=5)] == [c.key for _, _, c in sample_configs(4, 5)]
    with pytest.raises(ValueError, match="design must be"):
        pick_configs(2, design="grid")
