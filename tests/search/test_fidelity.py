"""Multi-fidelity: a candidate trains in rungs and stops at the first rung where it falls behind its peers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chipfit.contract import load_contract
from chipfit.data.sources import load_dataset
from chipfit.search.training import CandidateTrainer, fidelity_rungs
from chipfit.space import ArchConfig

REPO = Path(__file__).resolve().parents[2]
CFG = ArchConfig("cnn", {"resolution": 1.0, "width": 8, "blocks": 1, "kernel": 3, "stride": 2})


@pytest.fixture(scope="module")
def trainer(tmp_path_factory) -> CandidateTrainer:
    tmp = tmp_path_factory.mktemp("fidelity")
    doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    doc["search"].update({"epochs": 4, "rung_epochs": 1, "fidelity": "asha", "reduction_factor": 2, "threads": 1,
                          "recipe": {"distill": False, "qat": False}})
    (tmp / "c.yaml").write_text(yaml.safe_dump(doc))
    c = load_contract(tmp / "c.yaml")
    (tmp / "run").mkdir()
    return CandidateTrainer(c, load_dataset(c), c.get_target(), tmp / "run")


def _train(trainer: CandidateTrainer, number: int, peers: dict[int, list[float]]):
    base, done = trainer.assess(CFG, number, train_infeasible=True)
    assert done is None
    return trainer.train(base, CFG, peers=peers)


def test_rungs_grow_by_the_reduction_factor_below_the_full_budget():
    assert fidelity_rungs(1, 4, "asha", 2) == [1, 2]
    assert fidelity_rungs(5, 25, "asha", 3) == [5, 15]
    assert fidelity_rungs(5, 5, "asha", 3) == [] == fidelity_rungs(5, 5, "median", 3)


def test_a_candidate_stops_at_the_first_rung_where_it_is_not_in_the_top_share(trainer):
    full = _train(trainer, 0, {})
    assert full.state == "COMPLETE" and set(full.rungs) == {"1", "2"} and full.epochs >= 2
    ahead = {1: [1.0, 1.0, 1.0]}
    first = _train(trainer, 1, ahead)
    assert first.state == "PRUNED" and list(first.rungs) == ["1"] and first.epochs == 1
    assert "rung 1 of 2" in first.reason and "top 1/2 of 3" in first.reason
    later = _train(trainer, 2, {1: [0.0, 0.0, 0.0], 2: [1.0, 1.0, 1.0]})
    assert later.state == "PRUNED" and list(later.rungs) == ["1", "2"] and "rung 2 of 2" in later.reason
    # the later one trained one rung more (seconds are recorded, but a 60 ms epoch is too noisy to compare)
    assert later.epochs > first.epochs and later.train_seconds > 0 and first.train_seconds > 0
    # fewer than 3 peers at a rung: no judgement there
    assert _train(trainer, 3, {1: [1.0, 1.0]}).state == "COMPLETE"
