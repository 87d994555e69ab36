"""Budgets against a cost: one constraint value per budget (<= 0 holds, Optuna's convention) and its margin.

Device limits (the target's arena RAM and flash) are budgets too, even when the contract does not state
them. Accuracy budgets cannot be judged before training: they are reported as ``pending``.

>>> from chipfit import create_target, load_contract
>>> from chipfit.cost import CostModel
>>> from chipfit.space import create_space, reference_config
>>> c = load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": "stm32l4r5",
...                    "budgets": {"latency_ms": 5, "ram_kb": 64}})
>>> cost = CostModel().estimate(create_space(c.input_spec(), 10).graph(reference_config("resnet8")),
...                             c.get_target())
>>> [(b.name, b.passed) for b in check_budgets(cost, c)][:2]
[('latency_ms', False), ('ram_kb', True)]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from chipfit.contract.schema import Contract
from chipfit.cost.battery import battery_days, energy_budget_mj
from chipfit.cost.model import Cost
from chipfit.targets.target import Target


@dataclass(frozen=True)
class BudgetCheck:
    """One budget: the limit, the achieved figure, constraint value (<= 0 holds) and relative margin."""

    name: str
    unit: str
    limit: float | None
    achieved: float | None
    source: str  # predicted / measured / pending
    basis: str  # where the limit comes from
    value: float | None = None  # (achieved - limit) / limit for upper limits; <= 0 holds
    margin: float | None = None  # relative headroom, positive = room to spare

    @property
    def passed(self) -> bool | None:
        return None if self.value is None else self.value <= 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pass"] = self.passed
        return d


def _upper(name: str, unit: str, limit: float, achieved: float, source: str, basis: str) -> BudgetCheck:
    if limit <= 0:
        return BudgetCheck(name, unit, limit, achieved, source, basis, value=math.inf, margin=-math.inf)
    value = (achieved - limit) / limit
    return BudgetCheck(name, unit, limit, achieved, source, basis, value=value, margin=-value)


def _lower(name: str, unit: str, limit: float, achieved: float, source: str, basis: str) -> BudgetCheck:
    value = (limit - achieved) / limit
    return BudgetCheck(name, unit, limit, achieved, source, basis, value=value, margin=-value)


def measured_latency_check(limit_ms: float, achieved_ms: float, label: str, frontend_ms: float = 0.0, *,
                           name: str = "latency_ms (measured)") -> BudgetCheck:
    """The latency budget judged on a measurement (plus the predicted front-end, which the model file lacks)."""
    basis = "contract; " + label + (f" + predicted front-end {frontend_ms:.3g} ms" if frontend_ms else "")
    return _upper(name, "ms", limit_ms, achieved_ms, "measured", basis)


def check_budgets(cost: Cost, contract: Contract, *, target: Target | None = None,
                  accuracy: float | None = None, field_accuracy: float | None = None) -> list[BudgetCheck]:
    """Every budget of ``contract`` (plus the device's own limits) judged against ``cost``."""
    t = target or contract.get_target()
    b = contract.budgets
    src = cost.source
    out: list[BudgetCheck] = []
    if b.latency_ms is not None:
        out.append(_upper("latency_ms", "ms", b.latency_ms.max, cost.latency_ms, src,
                          f"contract (p{b.latency_ms.percentile:g}; analytical prediction has no spread)"))
    limits: list[tuple[float, str]] = []
    if b.energy_mj is not None:
        limits.append((b.energy_mj, "contract"))
    if contract.duty_cycle is not None:
        d = contract.duty_cycle
        limits.append((energy_budget_mj(d, sleep_power_uw=t.sleep_power_uw),
                       f"battery {d.battery_mah:g} mAh @ {d.battery_volts:g} V for {d.min_battery_days:g} days at "
                       f"{d.rate_hz * 3600:g}/h, sleep {t.sleep_power_uw:g} uW"))
    if limits:
        lim, basis = min(limits, key=lambda x: x[0])
        out.append(_upper("energy_mj", "mJ", lim, cost.energy_mj, src, basis))
    if contract.duty_cycle is not None:
        d = contract.duty_cycle
        days = battery_days(cost.energy_mj, cost.latency_ms, d, sleep_power_uw=t.sleep_power_uw)
        out.append(_lower("battery_days", "days", d.min_battery_days, days, src, "duty cycle"))
    ram_limit, ram_basis = t.ram_limit_kb, f"device {t.name} ({'arena block' if t.arena_kb else 'SRAM'})"
    if b.ram_kb is not None and b.ram_kb <= ram_limit:
        ram_limit, ram_basis = b.ram_kb, "contract"
    out.append(_upper("ram_kb", "kB", ram_limit, cost.ram_bytes / 1024, src, ram_basis))
    flash_limit, flash_basis = t.flash_kb, f"device {t.name}"
    if b.flash_kb is not None and b.flash_kb <= flash_limit:
        flash_limit, flash_basis = b.flash_kb, "contract"
    out.append(_upper("flash_kb", "kB", flash_limit, cost.flash_bytes / 1024, src, flash_basis))
    if cost.unsupported:
        out.append(BudgetCheck("runtime_support", "ops", 0, len(cost.unsupported), src,
                               "; ".join(cost.unsupported[:3]), value=float(len(cost.unsupported)),
                               margin=-float(len(cost.unsupported))))
    if b.accuracy is not None:
        out.append(_lower("accuracy", "", b.accuracy, accuracy, "measured", "contract") if accuracy is not None
                   else BudgetCheck("accuracy", "", b.accuracy, None, "pending", "needs training"))
    if b.field_accuracy is not None:
        fa = b.field_accuracy
        out.append(_lower("field_accuracy", "", fa.min, field_accuracy, "measured", f"contract ({fa.over})")
                   if field_accuracy is not None
                   else BudgetCheck("field_accuracy", "", fa.min, None, "pending", "needs training"))
    return out


def constraints(checks: list[BudgetCheck]) -> dict[str, float]:
    """Constraint values for Optuna's ``trial.set_constraint`` (only budgets that can be judged)."""
    return {c.name: float(c.value) for c in checks if c.value is not None}
