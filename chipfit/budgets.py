"""Budgets against a cost: one constraint value per budget (<= 0 holds, Optuna's convention) and its margin.

Device limits (the target's arena RAM and flash) are budgets too, even when the contract does not state
them. Accuracy budgets cannot be judged before training: they are reported as ``pending``.

A predicted latency or energy carries its 80 % interval (from cross-validation of the path that predicted it),
so its verdict is ``PASS`` (the whole interval holds), ``AT RISK`` (the interval crosses the limit) or ``FAIL``
(the whole interval breaks it). ``passed`` stays the point prediction's verdict; :func:`constraints` with
``risk="avoid"`` (the contract's ``search.risk`` default) judges on the interval's pessimistic end instead.

>>> from chipfit import create_target, load_contract
>>> from chipfit.cost import CostModel
>>> from chipfit.space import create_space, reference_config
>>> c = load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": "stm32l4r5",
...                    "budgets": {"latency_ms": 5, "ram_kb": 64}})
>>> cost = CostModel().estimate(create_space(c.input_spec(), 10).graph(reference_config("resnet8")),
...                             c.get_target())
>>> [(b.name, b.passed, b.result) for b in check_budgets(cost, c)][:2]
[('latency_ms', False, 'FAIL'), ('ram_kb', True, 'PASS')]
>>> BudgetCheck("latency_ms", "ms", 10, 9, "predicted", "contract", value=-0.1, margin=0.1,
...             interval=(7.5, 11.0)).result
'AT RISK'
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
    interval: tuple[float, float] | None = None  # 80 % interval of ``achieved`` (predicted latency / energy)
    predicted_by: str | None = None  # the prediction path behind ``achieved`` and ``interval``
    upper: bool = True  # the limit is a maximum (False: a minimum, e.g. battery days)

    @property
    def passed(self) -> bool | None:
        return None if self.value is None else self.value <= 0

    @property
    def result(self) -> str:
        """``PASS``, ``AT RISK`` (the interval crosses the limit), ``FAIL`` or ``pending``."""
        if self.value is None:
            return "pending"
        if self.interval is None or self.limit is None or not math.isfinite(self.value):
            return "PASS" if self.value <= 0 else "FAIL"
        lo, hi = self.interval
        good, bad = (hi <= self.limit, lo > self.limit) if self.upper else (lo >= self.limit, hi < self.limit)
        return "PASS" if good else "FAIL" if bad else "AT RISK"

    @property
    def pessimistic_value(self) -> float | None:
        """The constraint value at the interval's unfavourable end (the point value where there is none)."""
        if self.value is None or self.interval is None or not self.limit or not math.isfinite(self.value):
            return self.value
        lo, hi = self.interval
        return max(self.value, (hi - self.limit) / self.limit if self.upper else (self.limit - lo) / self.limit)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pass"] = self.passed
        d["result"] = self.result
        d["interval"] = list(self.interval) if self.interval else None
        return d


def _upper(name: str, unit: str, limit: float, achieved: float, source: str, basis: str,
           interval: tuple[float, float] | None = None, predicted_by: str | None = None) -> BudgetCheck:
    if limit <= 0:
        return BudgetCheck(name, unit, limit, achieved, source, basis, value=math.inf, margin=-math.inf,
                           interval=interval, predicted_by=predicted_by)
    value = (achieved - limit) / limit
    return BudgetCheck(name, unit, limit, achieved, source, basis, value=value, margin=-value, interval=interval,
                       predicted_by=predicted_by)


def _lower(name: str, unit: str, limit: float, achieved: float, source: str, basis: str,
           interval: tuple[float, float] | None = None, predicted_by: str | None = None) -> BudgetCheck:
    value = (limit - achieved) / limit
    return BudgetCheck(name, unit, limit, achieved, source, basis, value=value, margin=-value, interval=interval,
                       predicted_by=predicted_by, upper=False)


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
    by = cost.predicted_by or None
    out: list[BudgetCheck] = []
    if b.latency_ms is not None:
        spread = ("80 % interval of the prediction path" if cost.latency_interval_ms else
                  "no cross-validated error for this device")
        out.append(_upper("latency_ms", "ms", b.latency_ms.max, cost.latency_ms, src,
                          f"contract (p{b.latency_ms.percentile:g}; {spread})", cost.latency_interval_ms, by))
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
        out.append(_upper("energy_mj", "mJ", lim, cost.energy_mj, src, basis, cost.energy_interval_mj, by))
    if contract.duty_cycle is not None:
        d = contract.duty_cycle
        days = battery_days(cost.energy_mj, cost.latency_ms, d, sleep_power_uw=t.sleep_power_uw)
        days_iv = None
        if cost.energy_interval_mj and cost.latency_interval_ms:
            (e_lo, e_hi), (l_lo, l_hi) = cost.energy_interval_mj, cost.latency_interval_ms
            days_iv = (battery_days(e_hi, l_hi, d, sleep_power_uw=t.sleep_power_uw),
                       battery_days(e_lo, l_lo, d, sleep_power_uw=t.sleep_power_uw))
        out.append(_lower("battery_days", "days", d.min_battery_days, days, src, "duty cycle", days_iv, by))
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


def constraints(checks: list[BudgetCheck], *, risk: str = "allow") -> dict[str, float]:
    """Constraint values for Optuna's ``trial.set_constraint`` (only budgets that can be judged). With
    ``risk="avoid"`` a budget AT RISK counts as broken: its value is taken at the interval's unfavourable end."""
    if risk == "avoid":
        return {c.name: float(c.pessimistic_value) for c in checks if c.pessimistic_value is not None}
    return {c.name: float(c.value) for c in checks if c.value is not None}
