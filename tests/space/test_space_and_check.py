"""Search spaces (round-trip, every family builds and traces) and ``chipfit check``."""

from __future__ import annotations

import json

import optuna
import pytest
from typer.testing import CliRunner

from chipfit import check_contract, load_contract
from chipfit.cli import app
from chipfit.contract.schema import InputSpec
from chipfit.space import ArchConfig, create_space, reference_config, reference_names

SPECS = [InputSpec(modality="image", shape=[32, 32, 3]),
         InputSpec(modality="audio", sample_rate_hz=16000, duration_s=1.0),
         InputSpec(modality="audio", shape=[49, 10]), InputSpec(modality="series", shape=[128, 9])]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.modality}-{s.shape}")
def test_every_family_builds_traces_and_round_trips(spec):
    space = create_space(spec, num_classes=5)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for cfg in [*space.smallest(), *(space.sample(study.ask()) for _ in range(12))]:
        again = ArchConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg and again.key == cfg.key
        cand = space.candidate(cfg)
        assert cand.graph.macs > 0 and cand.graph.tensors[cand.graph.outputs[0]].shape == (1, 5)
        seen.add(cfg.family)
    assert seen == set(space.families)


def test_reference_architectures_match_mlperf():
    img = create_space(InputSpec(modality="image", shape=[32, 32, 3]), 10)
    r8 = img.graph(reference_config("resnet8"))
    assert (r8.macs, r8.params) == (12_501_632, 77_706)
    vww = create_space(InputSpec(modality="image", shape=[96, 96, 3]), 2)
    g = vww.graph(reference_config("mobilenetv1-0.25"))
    assert (g.macs, g.params) == (7_489_664, 210_850)
    kws = create_space(InputSpec(modality="audio", sample_rate_hz=16000, duration_s=1.0), 12)
    c = kws.candidate(reference_config("dscnn-kws"))
    assert (c.graph.macs, c.graph.params) == (2_656_768, 22_604)
    assert c.frontend_ops > 0 and c.frontend_ram_bytes >= 16000 * 2
    assert "cnn1d-har" in reference_names()


def test_check_feasible_example():
    c = load_contract("examples/digits.yaml")
    r = check_contract(c, samples=16)
    assert r.feasible and not r.binding
    names = [b.name for b in r.budgets]
    assert names[:5] == ["latency_ms", "energy_mj", "battery_days", "ram_kb", "flash_kb"]
    acc = next(b for b in r.budgets if b.name == "accuracy")
    assert acc.reachable is None


def test_check_infeasible_names_binding_budget_and_closest():
    c = load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": "rp2040",
                       "budgets": {"latency_ms": 0.001, "ram_kb": 64}})
    r = check_contract(c, samples=8)
    assert not r.feasible and r.binding == ["latency_ms"]
    lat = next(b for b in r.budgets if b.name == "latency_ms")
    assert lat.reachable is False and "cheapest candidate" in lat.why
    assert r.closest and "latency_ms" in r.closest["violations"]


def test_cli_check_exit_codes(tmp_path):
    ok = CliRunner().invoke(app, ["check", "examples/digits.yaml", "--json", "--samples", "8"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["verdict"] == "FEASIBLE"
    p = tmp_path / "tight.yaml"
    p.write_text("name: tight\ntask: {data: {source: builtin}}\ntarget: nrf52840\nbudgets: {latency_ms: 0.0001}\n")
    bad = CliRunner().invoke(app, ["check", str(p), "--samples", "4"])
    assert bad.exit_code == 3 and "INFEASIBLE" in bad.output and "latency_ms" in bad.output
