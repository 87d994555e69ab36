"""Warm starts: each family's reference analogue, shrunk until it holds the cost budgets, is asked first."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chipfit.budgets import check_budgets, constraints
from chipfit.contract import load_contract
from chipfit.data.sources import load_dataset
from chipfit.search.loop import SearchLoop, open_study
from chipfit.search.warmstart import _config, _shrink, start_indices, trial_params, warm_start_configs
from chipfit.space import ArchConfig

REPO = Path(__file__).resolve().parents[2]


def _loop(tmp_path: Path, *, latency_ms: float, warm_start: bool = True) -> SearchLoop:
    doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    doc["budgets"]["latency_ms"] = latency_ms
    doc["search"]["warm_start"] = warm_start
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
    c = load_contract(tmp_path / "c.yaml")
    (tmp_path / "run").mkdir()
    return SearchLoop(c, load_dataset(c), c.get_target(), tmp_path / "run")


def _fits(loop: SearchLoop, cfg: ArchConfig) -> bool:
    checks = check_budgets(loop.pricer.price(cfg).cost, loop.c, target=loop.target)
    return all(v <= 0 for v in constraints(checks, risk=loop.s.risk).values())


def test_the_study_asks_the_scaled_references_first_and_each_spends_the_budget(tmp_path):
    loop = _loop(tmp_path, latency_ms=0.5)
    study = open_study(loop.run_dir, 0, 10)
    configs = loop.warm_start(study)
    assert configs, "no family fits a 0.5 ms budget on this target"
    grown = 0
    for cfg in configs:
        assert _fits(loop, cfg)
        choices = loop.space.families[cfg.family]
        at = {k: choices[k].index(v) for k, v in cfg.params.items()}
        # no single step dearer still fits: the warm start spends what the budgets leave
        for k in choices:
            if at[k] + 1 < len(choices[k]):
                assert not _fits(loop, _config(loop.space, cfg.family, {**at, k: at[k] + 1})), (cfg, k)
        # it grew from the first config on the shrinking path that fits; every one before that breaks a budget
        idx = start_indices(loop.space, cfg.family)
        while not _fits(loop, _config(loop.space, cfg.family, idx)):
            idx = _shrink(loop.space, cfg.family, idx)
        assert all(at[k] >= i for k, i in idx.items())
        grown += at != idx
    assert grown, "no warm start grew back: the test does not exercise growing"
    asked = [loop.space.sample(study.ask()) for _ in configs]
    assert [c.key for c in asked] == [c.key for c in configs]


def test_a_tighter_budget_shrinks_further_and_warm_start_can_be_turned_off(tmp_path):
    for d in "abc":
        (tmp_path / d).mkdir()
    a = _loop(tmp_path / "a", latency_ms=50)
    b = _loop(tmp_path / "b", latency_ms=0.3)
    big = {c.family: a.pricer.price(c).cost.latency_ms for c in warm_start_configs(a.space, lambda c: _fits(a, c))}
    small = {c.family: b.pricer.price(c).cost.latency_ms for c in warm_start_configs(b.space, lambda c: _fits(b, c))}
    assert all(small[f] <= big[f] for f in small if f in big)
    assert any(small[f] < big[f] for f in small if f in big)


def test_a_run_trains_the_warm_starts_first_and_the_setting_turns_them_off(tmp_path, monkeypatch):
    for d in "ab":
        (tmp_path / d).mkdir()
    on = _loop(tmp_path / "a", latency_ms=2)
    on.s = on.s.model_copy(update={"trials": 2, "epochs": 1, "rung_epochs": 1})
    expected = [c.key for c in warm_start_configs(on.space, lambda c: _fits(on, c))][:2]
    on.run()
    assert [r.key for r in on.store.load()][: len(expected)] == expected
    off = _loop(tmp_path / "b", latency_ms=2, warm_start=False)
    off.s = off.s.model_copy(update={"trials": 1, "epochs": 1, "rung_epochs": 1})
    monkeypatch.setattr(off, "warm_start", lambda study: pytest.fail("warm start ran with warm_start: false"))
    off.run()
    assert len(off.store.load()) == 1
    assert trial_params(ArchConfig("cnn", {"width": 8})) == {"family": "cnn", "cnn.width": 8}
