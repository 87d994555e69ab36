"""k-fold cross-validation breaks ties at the top when the validation split is too small to rank: select() ranks
the tied candidates on their cross-validated accuracy before margins; stratified folds; crossval.json is reused
(a second finalise retrains nothing)."""

from __future__ import annotations

import json

import numpy as np

from chipfit.contract.schema import Budgets
from chipfit.search import crossval
from chipfit.search.selection import TieBreak, select, tie_key, tied_at_top
from chipfit.store import CandidateRecord


def _rec(i: int, acc: float, margin: float) -> CandidateRecord:
    return CandidateRecord(i, f"k{i}", {}, "COMPLETE", "", {"latency_ms": 1.0}, {}, {"ram_kb": margin},
                           accuracy_int8=acc)


def test_the_tie_is_broken_by_cross_validation_before_margins():
    recs = [_rec(0, 1.0, 90.0), _rec(1, 1.0, 10.0), _rec(2, 5 / 6, 50.0), _rec(3, 0.5, 99.0)]
    assert select(recs, Budgets()).best.id == 0  # without CV: the largest margins (the smallest model)
    scores = {tie_key(recs[0]): 0.80, tie_key(recs[1]): 0.95, tie_key(recs[2]): 0.97}
    # within one validation sample (1/6): 0, 1 and 2 are tied; the best cross-validated accuracy wins
    sel = select(recs, Budgets(), TieBreak(scores, 1 / 6))
    assert sel.best.id == 2 and set(sel.tied) == {0, 1, 2}
    # a strict tie only (tolerance 0): 2 is out, 1 wins over 0 on CV
    sel = select(recs, Budgets(), TieBreak(scores, 0.0))
    assert sel.best.id == 1 and set(sel.tied) == {0, 1}
    # a candidate below the tie never wins on CV, however high; one scored candidate is no tie-break
    assert select(recs, Budgets(), TieBreak({tie_key(recs[3]): 1.0, tie_key(recs[0]): 0.1}, 1 / 6)).best.id == 0
    assert select(recs, Budgets(), TieBreak({tie_key(recs[1]): 1.0}, 0.0)).tied == ()
    assert [r.id for r in tied_at_top(recs, Budgets(), 1 / 6, 2)] == [0, 1]


def test_folds_are_stratified_and_k_follows_the_smallest_class():
    y = np.repeat(np.arange(4), 10)
    k = crossval.fold_count(y)
    assert k == 5
    fold = crossval.stratified_folds(y, k, seed=0)
    for f in range(k):
        assert np.bincount(y[fold == f], minlength=4).tolist() == [2, 2, 2, 2]
    assert (crossval.stratified_folds(y, k, seed=0) == fold).all()
    assert crossval.fold_count(np.repeat(np.arange(3), 2)) == 0  # fewer than 3 of a class: no k-fold


def test_the_sidecar_is_reused(tmp_path, monkeypatch):
    """A second call finds every tied candidate in crossval.json and retrains none; a different data set
    (fingerprint) or k is not reused."""
    from chipfit.data.dataset import Dataset

    rng = np.random.default_rng(0)
    y_tr, y_va = np.repeat(np.arange(4), 8), np.repeat(np.arange(4), 2)
    data = Dataset(rng.normal(size=(32, 5)).astype(np.float32), y_tr, rng.normal(size=(8, 5)).astype(np.float32),
                   y_va, np.zeros((0, 5), np.float32), np.zeros(0, np.int64), ("a", "b", "c", "d"), "tabular")
    recs = [_rec(0, 1.0, 5.0), _rec(1, 1.0, 1.0)]
    calls: list[int] = []

    def fake(record, contract, data, target, run_dir, fold, k, threads):
        calls.append(record.id)
        return {"id": record.id, "key": record.key, "folds": [0.5 + record.id / 10] * k,
                "mean": 0.5 + record.id / 10, "train_seconds": 2.0, "wall_seconds": 3.0}

    class _Contract:  # what cross_validate_ties reads of a contract
        budgets = Budgets()

        class search:
            seed = 0

    monkeypatch.setattr(crossval, "_cross_validate", fake)
    monkeypatch.setattr(crossval, "too_small_to_rank", lambda c, d: True)
    first = crossval.cross_validate_ties(recs, _Contract, data, None, tmp_path)
    assert calls == [0, 1] and first.scores == {0: 0.5, 1: 0.6} and first.folds == 5
    assert first.train_seconds == 4.0 and first.wall_seconds == 6.0
    assert select(recs, Budgets(), first.tie_break).best.id == 1
    doc = json.loads((tmp_path / crossval.CROSSVAL_FILE).read_text())
    assert set(doc["candidates"]) == {"0:k0", "1:k1"} and doc["folds"] == 5
    again = crossval.cross_validate_ties(recs, _Contract, data, None, tmp_path)
    assert calls == [0, 1] and again.scores == first.scores and again.train_seconds == 4.0
    assert crossval.stored_tie_break(tmp_path) == first.tie_break
    other = Dataset(data.x_train + 1, y_tr, data.x_val, y_va, data.x_test, data.y_test, data.class_names, "tabular")
    crossval.cross_validate_ties(recs, _Contract, other, None, tmp_path)
    assert calls == [0, 1, 0, 1]
