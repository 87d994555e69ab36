"""``check_contract``: before any training, what the search space can reach on the target vs each budget.

The cheapest config of every family bounds what the space can do (costs grow with width, depth and
resolution); a seeded random sample of the space tells how much of it holds every budget at once. Accuracy
budgets are ``pending``: they need training.

>>> from chipfit import load_contract
>>> from chipfit.check import check_contract
>>> c = load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": "stm32l4r5",
...                    "budgets": {"latency_ms": 0.001}})
>>> r = check_contract(c, samples=8)
>>> r.feasible, r.binding
(False, ['latency_ms'])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import optuna

from chipfit.budgets import BudgetCheck, check_budgets
from chipfit.contract.schema import Contract
from chipfit.cost.model import Cost, CostModel
from chipfit.logging import get_logger
from chipfit.pricing import Pricer
from chipfit.space import ArchConfig, create_space

log = get_logger(__name__)


@dataclass(frozen=True)
class BudgetReach:
    """The best figure any checked candidate reaches for one budget."""

    name: str
    unit: str
    limit: float | None
    best: float | None
    best_config: dict[str, Any] | None
    reachable: bool | None  # None = pending (accuracy)
    holding: int  # candidates that hold this budget (point prediction)
    basis: str
    why: str = ""
    at_risk: int = 0  # candidates whose 80 % interval crosses this budget
    result: str | None = None  # the best candidate's verdict: PASS, AT RISK, FAIL (None: pending)
    interval: tuple[float, float] | None = None  # the best candidate's 80 % interval, where predicted
    predicted_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CheckReport:
    contract: str
    target: str
    runtime: str
    modality: str
    candidates: int
    feasible_candidates: int
    budgets: tuple[BudgetReach, ...]
    binding: list[str]
    closest: dict[str, Any] | None
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return self.feasible_candidates > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "contract": self.contract, "target": self.target, "runtime": self.runtime, "modality": self.modality,
            "verdict": "FEASIBLE" if self.feasible else "INFEASIBLE", "candidates": self.candidates,
            "feasible_candidates": self.feasible_candidates, "binding": self.binding, "closest": self.closest,
            "budgets": [b.to_dict() for b in self.budgets], "seconds": self.seconds, "source": "predicted",
            "notes": self.notes,
        }


def check_contract(contract: Contract, *, samples: int = 64, cost_model: CostModel | None = None) -> CheckReport:
    """Cost the cheapest config of every family plus ``samples`` seeded random configs; no training."""
    start = time.perf_counter()
    from chipfit.data.sources import peek_classes

    target = contract.get_target()
    space = create_space(contract.input_spec(), len(peek_classes(contract)))  # the data's real head
    pricer = Pricer(space, target, cost_model=cost_model, dtype=contract.dtype)
    configs: dict[str, ArchConfig] = {c.key: c for c in space.smallest()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=contract.search.seed))
    for _ in range(samples):
        cfg = space.sample(study.ask())
        configs.setdefault(cfg.key, cfg)
    rows: list[tuple[ArchConfig, Cost, list[BudgetCheck]]] = []
    for cfg in configs.values():
        cost = pricer.price(cfg).cost
        rows.append((cfg, cost, check_budgets(cost, contract, target=target)))
    names = [b.name for b in rows[0][2]]
    reach = []
    for i, name in enumerate(names):
        judged = [(cfg, checks[i]) for cfg, _, checks in rows if checks[i].value is not None]
        first = rows[0][2][i]
        if not judged:
            reach.append(BudgetReach(name, first.unit, first.limit, None, None, None, 0, first.basis,
                                     "accuracy is only known after training"))
            continue
        cfg, best = min(judged, key=lambda x: x[1].value)  # type: ignore[arg-type, return-value]
        holding = sum(1 for _, c in judged if c.passed)
        why = "" if best.passed else _why(name, best, rows)
        reach.append(BudgetReach(name, best.unit, best.limit, best.achieved, cfg.to_dict(), bool(best.passed),
                                 holding, best.basis, why, sum(1 for _, c in judged if c.result == "AT RISK"),
                                 best.result, best.interval, best.predicted_by))
    avoid = contract.search.risk == "avoid"  # AT RISK counts as infeasible, as the search will judge it
    feasible = [r for r in rows if all(c.passed is not False and not (avoid and c.result == "AT RISK")
                                       for c in r[2])]
    closest_row = min(rows, key=lambda r: sum(max(c.value or 0.0, 0.0) for c in r[2]))
    binding = sorted({c.name for c in closest_row[2] if c.passed is False or (avoid and c.result == "AT RISK")}
                     ) if not feasible else []
    closest = None
    if not feasible:
        closest = {"config": closest_row[0].to_dict(),
                   "violations": {c.name: {"limit": c.limit, "achieved": c.achieved, "margin": c.margin}
                                  for c in closest_row[2] if c.passed is False}}
    notes = [f"efficiency: {rows[0][1].efficiency_source}"]
    risky = [b.name for b in reach if b.at_risk]
    if risky:
        notes.append(f"AT RISK (80 % interval crosses the limit) on {', '.join(risky)}; search.risk: "
                     f"{contract.search.risk} ({'never trained' if avoid else 'judged on the point prediction'})")
    if any(b.reachable is None for b in reach):
        notes.append("accuracy budgets are judged after training (chipfit run)")
    report = CheckReport(contract.name, target.name, target.runtime_label(rows[0][1].runtime), space.modality,
                         len(rows), len(feasible),
                         tuple(reach), binding, closest, time.perf_counter() - start, notes)
    log.info("checked %d candidates in %.2fs: %d feasible", len(rows), report.seconds, len(feasible))
    return report


def _why(name: str, best: BudgetCheck, rows: list[tuple[ArchConfig, Cost, list[BudgetCheck]]]) -> str:
    need = f"the cheapest candidate needs {best.achieved:.4g} {best.unit} against {best.limit:.4g} {best.unit}"
    cost = min(rows, key=lambda r: r[1].latency_ms)[1]
    if name == "latency_ms":
        overhead = sum(layer.latency_ms for layer in cost.layers if layer.bound == "overhead")
        fe = sum(layer.latency_ms for layer in cost.layers if layer.op == "dsp")
        extra = f"; per-op runtime overhead alone is {overhead:.3g} ms" if overhead else ""
        extra += f"; the front-end alone takes {fe:.3g} ms" if fe else ""
        return need + extra + " (a faster runtime or device, or a looser budget, is needed)"
    if name == "energy_mj" and best.limit is not None and best.limit <= 0:
        return "sleep power alone drains the battery before the required days: no model can fit"
    if name in ("ram_kb", "flash_kb"):
        return need + " (includes the runtime's own footprint: " + cost.runtime + ")"
    return need
