"""k-fold cross-validation of the finalists tied at the top, when the validation split is too small to rank them.

With a handful of validation samples (fewer than the training plan needs for early stopping:
:func:`chipfit.train.plan.plan_training`), many candidates reach the same validation accuracy, often 1.0, and
selection would fall back on the largest budget margins: the smallest model. Here the candidates tied at the top
(within one validation sample, at most :data:`MAX_CANDIDATES`) are each retrained on ``k`` stratified folds of
train + validation (``k`` = the smallest class's count, clamped to 3..5), with the candidate's own training plan,
recipe and seed, and scored by the **int8** accuracy of each fold's quantized model on its held-out fold: the
int8 model is what ships and what selection ranks on, and on small data the export and quantization cost about
a second a fold. The mean over folds breaks the tie (:class:`~chipfit.search.selection.TieBreak`).

Results go to ``crossval.json`` in the run directory, keyed by candidate (id and configuration key) together
with the data's fingerprint, ``k`` and the folds' seed, so finalising the run again reuses them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.contract.schema import Contract
from chipfit.data.dataset import Dataset
from chipfit.logging import get_logger
from chipfit.search.selection import TieBreak, tie_key, tied_at_top
from chipfit.space import ArchConfig
from chipfit.store import CandidateRecord
from chipfit.targets.target import Target

log = get_logger(__name__)
CROSSVAL_FILE = "crossval.json"
MAX_CANDIDATES = 5  # tied candidates re-ranked at most (the best by validation accuracy and margins first)
MAX_SECONDS = 300.0  # wall seconds for all of them; a candidate not finished by then is left out of the tie-break
MIN_FOLDS, MAX_FOLDS = 3, 5
METRIC = "int8"


@dataclass(frozen=True)
class CrossValResult:
    """What cross-validation of the tied candidates found, as the report states it."""

    tie_break: TieBreak | None  # None when it did not apply (validation split large enough, no tie)
    folds: int = 0
    scores: dict[int, float] = dataclasses.field(default_factory=dict)  # candidate id -> mean fold accuracy
    train_seconds: float = 0.0  # optimizer steps over every fold (also when reused from crossval.json)
    wall_seconds: float = 0.0  # everything: training, export, quantization, fold accuracies
    reason: str = ""  # why it ran, or why not


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of every sample: each class's samples shuffled with ``seed`` and dealt round-robin.

    >>> stratified_folds(np.array([0, 0, 0, 1, 1, 1]), 3, 0).tolist().count(0)
    2
    """
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), np.int64)
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)  # the next class starts where this one stopped, so folds stay even in size
    return fold


def fold_count(y: np.ndarray) -> int:
    """``k``: the smallest class's count, clamped to :data:`MIN_FOLDS`..:data:`MAX_FOLDS` (0: too few samples)."""
    smallest = int(np.bincount(y).min()) if len(y) else 0
    return min(MAX_FOLDS, smallest) if smallest >= MIN_FOLDS else 0


def too_small_to_rank(contract: Contract, data: Dataset) -> bool:
    """The rule the training plan applies: a validation split below what early stopping needs cannot rank."""
    from chipfit.train.plan import plan_training

    return not plan_training(len(data.y_train), len(data.y_val), data.num_classes, contract.search).early_stop


def _load(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        doc = {}
    return doc.get("candidates", {}) if all(doc.get(k) == v for k, v in header.items()) else {}


def _save(path: Path, header: dict[str, Any], candidates: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**header, "candidates": candidates}, indent=1))
    tmp.replace(path)


def _cross_validate(record: CandidateRecord, contract: Contract, data: Dataset, target: Target, run_dir: Path,
                    fold: np.ndarray, k: int, threads: int | None) -> dict[str, Any]:
    """Retrain ``record``'s config on each fold (its own plan, recipe and seed); the int8 accuracy per fold."""
    from chipfit.search.training import CandidateTrainer

    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    config = ArchConfig.from_dict(record.config)
    base = {"id": record.id, "key": record.key, "config": record.config, "predicted": record.predicted,
            "constraints": record.constraints, "margins": record.margins}
    accs, seconds, scratch, t0 = [], 0.0, run_dir / "crossval" / f"{record.id:04d}", time.monotonic()
    try:
        for f in range(k):
            tr, va = fold != f, fold == f
            part = dataclasses.replace(data, x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va])
            trainer = CandidateTrainer(contract, part, target, run_dir, threads=threads)
            rec = trainer.train(base, config, subdir=f"crossval/{record.id:04d}/fold{f}", prune=False)
            if rec.state != "COMPLETE" or rec.accuracy_int8 is None:
                raise RuntimeError(f"fold {f}: {rec.state} {rec.reason}")
            accs.append(float(rec.accuracy_int8))
            seconds += rec.train_seconds
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"id": record.id, "key": record.key, "folds": accs, "mean": float(np.mean(accs)),
            "train_seconds": seconds, "wall_seconds": time.monotonic() - t0}


def cross_validate_ties(records: Sequence[CandidateRecord], contract: Contract, data: Dataset, target: Target,
                        run_dir: Path, *, threads: int | None = None, max_candidates: int = MAX_CANDIDATES,
                        max_seconds: float = MAX_SECONDS) -> CrossValResult:
    """Cross-validate the candidates tied at the top when the validation split is too small to rank them
    (see the module docstring); results are read from and added to ``crossval.json``."""
    if not too_small_to_rank(contract, data) or not len(data.y_val):
        return CrossValResult(None, reason="the validation split is large enough to rank candidates")
    tolerance = 1.0 / len(data.y_val)
    every = tied_at_top(records, contract.budgets, tolerance, len(records))
    tied = every[:max_candidates]
    if len(tied) < 2:
        return CrossValResult(None, reason="no tie at the top")
    y = np.concatenate([data.y_train, data.y_val])
    k = fold_count(y)
    if not k:
        return CrossValResult(None, reason=f"too few samples per class for {MIN_FOLDS}-fold cross-validation")
    seed = contract.search.seed
    header = {"version": 1, "fingerprint": data.fingerprint, "folds": k, "seed": seed, "metric": METRIC,
              "tolerance": tolerance}
    path = run_dir / CROSSVAL_FILE
    done = _load(path, header)
    fold = stratified_folds(y, k, seed)
    t0 = time.monotonic()
    for r in tied:
        if tie_key(r) in done:
            continue
        if time.monotonic() - t0 > max_seconds:
            log.warning("cross-validation stopped after %.0f s: candidate %d left out of the tie-break",
                        time.monotonic() - t0, r.id)
            continue
        try:
            done[tie_key(r)] = _cross_validate(r, contract, data, target, run_dir, fold, k, threads)
        except Exception as exc:  # a candidate that cannot be cross-validated is left out, the run goes on
            log.warning("candidate %d could not be cross-validated: %s", r.id, exc)
            continue
        _save(path, header, done)
        log.info("candidate %d: %d-fold int8 accuracy %.3f (validation %.3f)", r.id, k,
                 done[tie_key(r)]["mean"], r.accuracy_int8)
    scored = [r for r in tied if tie_key(r) in done]
    scores = {tie_key(r): done[tie_key(r)]["mean"] for r in scored}
    return CrossValResult(TieBreak(scores, tolerance), folds=k, scores={r.id: scores[tie_key(r)] for r in scored},
                          train_seconds=sum(done[tie_key(r)]["train_seconds"] for r in scored),
                          wall_seconds=sum(done[tie_key(r)]["wall_seconds"] for r in scored),
                          reason=f"{len(data.y_val)} validation samples cannot rank: {len(every)} candidates within "
                                 f"one sample of the best; the first {len(tied)} by validation accuracy and margins "
                                 f"re-ranked by {k}-fold cross-validation ({METRIC} accuracy) on train + validation"
                                 + (f", {len(tied) - len(scored)} not finished" if len(scored) < len(tied) else ""))


def stored_tie_break(run_dir: Path) -> TieBreak | None:
    """The tie-break a finalised run used, from its ``crossval.json`` (None without one)."""
    try:
        doc = json.loads((run_dir / CROSSVAL_FILE).read_text())
        return TieBreak({k: v["mean"] for k, v in doc["candidates"].items()}, float(doc["tolerance"]))
    except (OSError, KeyError, TypeError, ValueError):
        return None
