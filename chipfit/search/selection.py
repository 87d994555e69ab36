"""Choosing among recorded candidates: the Pareto front and the best model under the contract's budgets.

>>> from chipfit.store import CandidateRecord
>>> r = lambda i, acc, lat: CandidateRecord(i, str(i), {}, "COMPLETE", "", {"latency_ms": lat}, {}, {},
...                                         accuracy_int8=acc)
>>> [c.id for c in pareto([r(0, 0.9, 2.0), r(1, 0.8, 1.0), r(2, 0.7, 3.0)])]
[1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chipfit.contract.schema import Budgets
from chipfit.store import CandidateRecord


@dataclass(frozen=True)
class Selection:
    """The best candidate (or none), whether it meets the accuracy budgets, and what binds otherwise."""

    best: CandidateRecord | None
    meets_accuracy: bool
    binding: list[str]
    closest: CandidateRecord | None


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


def select(records: Sequence[CandidateRecord], budgets: Budgets) -> Selection:
    """Best = highest int8 validation accuracy (field accuracy under a field budget) that holds every budget;
    ties go to larger margins. Without a trained feasible candidate, the closest one is named."""
    done = [r for r in _trained(records) if r.feasible]
    acc_budget, fa = budgets.accuracy, budgets.field_accuracy

    def holds(r: CandidateRecord) -> bool:
        ok = acc_budget is None or r.accuracy_int8 >= acc_budget
        return ok and (fa is None or (r.accuracy_field_int8 is not None and r.accuracy_field_int8 >= fa.min))

    def score(r: CandidateRecord) -> tuple[float, float]:
        value = r.accuracy_field_int8 if fa is not None and r.accuracy_field_int8 is not None else r.accuracy_int8
        return round(value, 6), sum(r.margins.values())

    meeting = [r for r in done if holds(r)]
    pool = meeting or done
    if pool:
        best = max(pool, key=score)
        binding = [] if meeting else [n for n, b in (("accuracy", acc_budget), ("field_accuracy", fa)) if b]
        return Selection(best, bool(meeting), binding, None if meeting else best)
    scored = [r for r in records if r.constraints]
    if not scored:
        return Selection(None, False, [], None)
    closest = min(scored, key=lambda r: sum(max(v, 0.0) for v in r.constraints.values()))
    return Selection(None, False, sorted(k for k, v in closest.constraints.items() if v > 0), closest)
