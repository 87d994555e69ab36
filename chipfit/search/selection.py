"""Choosing among recorded candidates: the Pareto front and the best model under the contract's budgets.

>>> from chipfit.store import CandidateRecord
>>> r = lambda i, acc, lat: CandidateRecord(i, str(i), {}, "COMPLETE", "", {"latency_ms": lat}, {}, {},
...                                         accuracy_int8=acc)
>>> [c.id for c in pareto([r(0, 0.9, 2.0), r(1, 0.8, 1.0), r(2, 0.7, 3.0)])]
[1, 0]
>>> from chipfit.contract.schema import Budgets
>>> outcome(r(3, 0.6, 1.0), Budgets(accuracy=0.8))
'below the accuracy budget'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from chipfit.contract.schema import Budgets
from chipfit.store import CandidateRecord


@dataclass(frozen=True)
class Selection:
    """The best candidate (or none), whether it meets the accuracy budgets, and what binds otherwise;
    ``tied``: the ids of the candidates tied at the top whose k-fold cross-validation decided (empty when
    none did)."""

    best: CandidateRecord | None
    meets_accuracy: bool
    binding: list[str]
    closest: CandidateRecord | None
    tied: tuple[int, ...] = ()


@dataclass(frozen=True)
class TieBreak:
    """k-fold cross-validated accuracies of candidates tied at the top, by :func:`tie_key`, and how close two
    validation accuracies must be to count as tied (one validation sample: ``1 / n_val``)."""

    scores: Mapping[str, float]
    tolerance: float


def tie_key(r: CandidateRecord) -> str:
    """How a candidate's cross-validation result is keyed (its id and configuration key)."""
    return f"{r.id}:{r.key}"


def _trained(records: Sequence[CandidateRecord]) -> list[CandidateRecord]:
    return [r for r in records if r.state == "COMPLETE" and r.accuracy_int8 is not None]


def pareto(records: Sequence[CandidateRecord]) -> list[CandidateRecord]:
    """Trained candidates not dominated on (int8 accuracy up, predicted latency down), fastest first."""
    done = _trained(records)
    front = []
    for r in done:
        lat, acc = r.predicted["latency_ms"], r.accuracy_int8
        if not any(o.accuracy_int8 >= acc and o.predicted["latency_ms"] <= lat and
                   (o.accuracy_int8 > acc or o.predicted["latency_ms"] < lat) for o in done):
            front.append(r)
    return sorted(front, key=lambda r: r.predicted["latency_ms"])


def _ranked(records: Sequence[CandidateRecord], budgets: Budgets
            ) -> tuple[list[CandidateRecord], bool, Callable[[CandidateRecord], float]]:
    """The pool the best is chosen from, best first (by validation accuracy, then margins), whether it holds the
    accuracy budgets, and the figure it is ranked on."""
    done = [r for r in _trained(records) if r.feasible]
    acc_budget, fa = budgets.accuracy, budgets.field_accuracy

    def holds(r: CandidateRecord) -> bool:
        ok = acc_budget is None or r.accuracy_int8 >= acc_budget
        return ok and (fa is None or (r.accuracy_field_int8 is not None and r.accuracy_field_int8 >= fa.min))

    def value(r: CandidateRecord) -> float:
        return r.accuracy_field_int8 if fa is not None and r.accuracy_field_int8 is not None else r.accuracy_int8

    meeting = [r for r in done if holds(r)]
    pool = meeting or done
    return sorted(pool, key=lambda r: (round(value(r), 6), sum(r.margins.values())), reverse=True), bool(meeting), value


def tied_at_top(records: Sequence[CandidateRecord], budgets: Budgets, tolerance: float, limit: int
                ) -> list[CandidateRecord]:
    """The candidates :func:`select` would choose among whose validation accuracy is within ``tolerance`` of the
    best's, best first (at most ``limit``); fewer than two means no tie.

    >>> from chipfit.contract.schema import Budgets
    >>> r = lambda i, acc, m: CandidateRecord(i, str(i), {}, "COMPLETE", "", {"latency_ms": 1.0}, {}, {"ram": m},
    ...                                       accuracy_int8=acc)
    >>> [c.id for c in tied_at_top([r(0, 1.0, 5.0), r(1, 5 / 6, 9.0), r(2, 1.0, 1.0), r(3, 0.5, 9.0)],
    ...                           Budgets(), 1 / 6, 5)]
    [0, 2, 1]
    """
    pool, _, value = _ranked(records, budgets)
    if not pool:
        return []
    top = value(pool[0])
    return [r for r in pool if value(r) >= top - tolerance - 1e-9][:limit]


def select(records: Sequence[CandidateRecord], budgets: Budgets, tie_break: TieBreak | None = None) -> Selection:
    """Best = highest int8 validation accuracy (field accuracy under a field budget) that holds every budget;
    ties go to larger margins. Without a trained feasible candidate, the closest one is named.

    With ``tie_break`` (k-fold cross-validated accuracies, when the validation split is too small to rank), the
    candidates tied at the top (within ``tie_break.tolerance``) that have a cross-validated accuracy are ranked
    on it first, then on validation accuracy and margins."""
    pool, meeting, value = _ranked(records, budgets)
    acc_budget, fa = budgets.accuracy, budgets.field_accuracy
    if pool:
        best, tied = pool[0], ()
        if tie_break is not None:
            top = value(pool[0])
            group = [r for r in pool if value(r) >= top - tie_break.tolerance - 1e-9
                     and tie_key(r) in tie_break.scores]
            if len(group) >= 2:
                best = max(group, key=lambda r: (round(tie_break.scores[tie_key(r)], 6), round(value(r), 6),
                                                 sum(r.margins.values())))
                tied = tuple(r.id for r in group)
        binding = [] if meeting else [n for n, b in (("accuracy", acc_budget), ("field_accuracy", fa)) if b]
        return Selection(best, meeting, binding, None if meeting else best, tied)
    scored = [r for r in records if r.constraints]
    if not scored:
        return Selection(None, False, [], None)
    closest = min(scored, key=lambda r: sum(max(v, 0.0) for v in r.constraints.values()))
    return Selection(None, False, sorted(k for k, v in closest.constraints.items() if v > 0), closest)


# Where a run's compute went: every record falls in exactly one of these, in this order of precedence (a run's
# report adds rows for training outside the candidates: a distillation teacher, k-fold cross-validation)
OUTCOMES = ("holds every budget", "below the accuracy budget", "below the field-accuracy budget",
            "broke a cost budget (trained anyway)", "pruned", "failed", "infeasible (costed, never trained)")


def outcome(r: CandidateRecord, budgets: Budgets) -> str:
    """Which of :data:`OUTCOMES` a record ended in, judged on validation accuracy as the search saw it."""
    if r.state == "PRUNED":
        return "pruned"
    if r.state == "FAILED":
        return "failed"
    if r.state == "INFEASIBLE" or r.state != "COMPLETE":
        return "infeasible (costed, never trained)"
    if not r.feasible:
        return "broke a cost budget (trained anyway)"
    if budgets.accuracy is not None and (r.accuracy_int8 is None or r.accuracy_int8 < budgets.accuracy):
        return "below the accuracy budget"
    fa = budgets.field_accuracy
    if fa is not None and (r.accuracy_field_int8 is None or r.accuracy_field_int8 < fa.min):
        return "below the field-accuracy budget"
    return "holds every budget"


@dataclass(frozen=True)
class ComputeShare:
    """The candidates of one outcome and the seconds they took: training (optimizer steps and validation) and
    wall (everything: pricing, training, export, quantization, int8 measurement; for a failed candidate, up to
    its failure)."""

    outcome: str
    candidates: int
    train_seconds: float
    wall_seconds: float


def compute_account(records: Sequence[CandidateRecord], budgets: Budgets) -> list[ComputeShare]:
    """Seconds per outcome, in :data:`OUTCOMES` order, outcomes without candidates left out.

    >>> from chipfit.contract.schema import Budgets
    >>> r = lambda i, st, acc, s: CandidateRecord(i, str(i), {}, st, "", {"latency_ms": 1.0}, {}, {},
    ...                                           accuracy_int8=acc, train_seconds=s, wall_seconds=s + 1)
    >>> [(c.outcome, c.train_seconds) for c in compute_account(
    ...     [r(0, "COMPLETE", 0.9, 10), r(1, "COMPLETE", 0.5, 4), r(2, "PRUNED", None, 2)], Budgets(accuracy=0.8))]
    [('holds every budget', 10), ('below the accuracy budget', 4), ('pruned', 2)]
    """
    by: dict[str, list[CandidateRecord]] = {o: [] for o in OUTCOMES}
    for r in records:
        by[outcome(r, budgets)].append(r)
    return [ComputeShare(o, len(rs), sum(r.train_seconds for r in rs), sum(r.wall_seconds for r in rs))
            for o, rs in by.items() if rs]
