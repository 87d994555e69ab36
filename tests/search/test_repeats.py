"""A sampler that keeps proposing recorded configs does not end the search: after ``REPEATS_BEFORE_RANDOM``
repeats an unseen config drawn at random (seeded) is asked next, and the search stops as exhausted only when
random draws find nothing unseen either."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from chipfit.contract import load_contract
from chipfit.data.sources import load_dataset
from chipfit.search import loop as loop_module
from chipfit.search.claims import Claims
from chipfit.search.loop import REPEATS_BEFORE_RANDOM, SearchLoop, open_study
from chipfit.search.warmstart import trial_params
from chipfit.store import CandidateRecord

REPO = Path(__file__).resolve().parents[2]


def _stuck_loop(folder: Path, monkeypatch: pytest.MonkeyPatch, trials: int = 12) -> SearchLoop:
    """A digits search whose sampler proposes one and the same config on every ask."""
    doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    doc["search"].update(warm_start=False, trials=trials, seed=3)
    folder.mkdir()
    (folder / "c.yaml").write_text(yaml.safe_dump(doc))
    c = load_contract(folder / "c.yaml")
    (folder / "run").mkdir()
    loop = SearchLoop(c, load_dataset(c), c.get_target(), folder / "run")
    fixed = trial_params(loop.space.smallest()[0])
    monkeypatch.setattr(loop_module, "create_sampler", lambda name, *, seed, trials: (
        optuna.samplers.PartialFixedSampler(fixed, optuna.samplers.RandomSampler(seed=seed))))
    return loop


def _draw(loop: SearchLoop, n: int) -> tuple[list[str], list[int]]:
    """Ask for ``n`` candidates, recording each as trained; the keys and how many asks each took."""
    study = open_study(loop.run_dir, loop.s.seed, loop.s.trials, loop.s.sampler)
    claims, repeats, keys, asks = Claims(loop.run_dir), [0], [], []
    for i in range(n):
        before = len(study.trials)
        nxt = loop.next_candidate(study, claims, None, repeats)
        if nxt is None:
            break
        trial, config = nxt
        loop.record(study, trial, CandidateRecord(i, config.key, config.to_dict(), "COMPLETE", "", {"latency_ms": 1.0},
                                                  {}, {}, accuracy_int8=0.5))
        keys.append(config.key)
        asks.append(len(study.trials) - before)
    return keys, asks


def test_a_sampler_that_repeats_itself_gets_unseen_random_configs(tmp_path, monkeypatch):
    loop = _stuck_loop(tmp_path / "a", monkeypatch)
    keys, asks = _draw(loop, 6)
    assert len(keys) == 6 and len(set(keys)) == 6, keys  # before, the search stopped after the first
    assert keys[0] == loop.space.smallest()[0].key
    # the first unseen config came after REPEATS_BEFORE_RANDOM repeats; from then on each repeat is followed by one
    assert asks[1] == REPEATS_BEFORE_RANDOM + 1 and asks[2:] == [2] * 4, asks
    assert not loop.stopped
    # the same contract and seed draw the same configs
    again, _ = _draw(_stuck_loop(tmp_path / "b", monkeypatch), 6)
    assert again == keys


def test_the_search_stops_as_exhausted_when_random_draws_find_nothing_unseen(tmp_path, monkeypatch):
    loop = _stuck_loop(tmp_path / "a", monkeypatch)
    monkeypatch.setattr(loop_module, "RANDOM_DRAWS", 0)
    keys, _ = _draw(loop, 3)
    assert len(keys) == 1
    assert loop.stopped == ("search space exhausted: the sampler keeps proposing recorded configs and 0 random "
                            "draws found none unseen")
