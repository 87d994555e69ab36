"""Budget verdicts with a stated error: PASS, AT RISK (the 80 % interval crosses the limit) or FAIL, in the
constraint values the search uses (search.risk), the report row, profile and check."""

from __future__ import annotations

import pytest

from chipfit import load_contract, profile
from chipfit.budgets import BudgetCheck, check_budgets, constraints
from chipfit.check import check_contract
from chipfit.errors import ContractError
from chipfit.runreport import BudgetRow, RunReport
from chipfit.search.training import violations


def _check(achieved: float, interval: tuple[float, float] | None, *, upper: bool = True) -> BudgetCheck:
    value = (achieved - 10) / 10 if upper else (10 - achieved) / 10
    return BudgetCheck("latency_ms" if upper else "battery_days", "ms", 10, achieved, "predicted", "contract",
                       value=value, margin=-value, interval=interval, predicted_by="same core, other board",
                       upper=upper)


@pytest.mark.parametrize(("achieved", "interval", "upper", "result"), [
    (8, (6, 9.5), True, "PASS"), (9, (7, 11), True, "AT RISK"), (11, (9, 13), True, "AT RISK"),
    (12, (10.5, 14), True, "FAIL"), (9, None, True, "PASS"), (11, None, True, "FAIL"),
    (12, (10.5, 14), False, "PASS"), (11, (9, 13), False, "AT RISK"), (8, (6, 9.5), False, "FAIL"),
])
def test_result_from_interval(achieved, interval, upper, result):
    assert _check(achieved, interval, upper=upper).result == result


def test_risk_setting_in_constraints_and_reasons():
    checks = [_check(9, (7, 11))]
    assert constraints(checks, risk="allow")["latency_ms"] == pytest.approx(-0.1)
    assert constraints(checks, risk="avoid")["latency_ms"] == pytest.approx(0.1)  # judged at the interval's top
    assert "AT RISK" in violations(checks, risk="avoid") and violations(checks, risk="allow") == ""


def test_contract_risk_default_and_check():
    base = {"name": "x", "task": {"data": {"source": "builtin"}}, "target": "stm32l4r5"}
    assert load_contract(base).search.risk == "avoid"
    cost = profile("resnet8", target="stm32l4r5", input_shape=(32, 32, 3)).cost
    _, hi = cost.latency_interval_ms
    limit = (cost.latency_ms + hi) / 2  # the point holds, the interval's top does not
    c = load_contract({**base, "budgets": {"latency_ms": limit}})
    lat = next(b for b in check_budgets(cost, c) if b.name == "latency_ms")
    assert lat.passed and lat.result == "AT RISK" and lat.predicted_by == cost.predicted_by
    rep = profile("resnet8", target="stm32l4r5", input_shape=(32, 32, 3), contract=c)
    assert rep.verdict == "AT RISK" and rep.to_dict()["budgets"][0]["result"] == "AT RISK"
    with pytest.raises(ContractError, match="risk"):
        load_contract({**base, "search": {"risk": "sometimes"}})


def test_check_counts_at_risk_candidates():
    base = {"name": "x", "task": {"data": {"source": "builtin"}}, "target": "stm32l4r5",
            "budgets": {"latency_ms": 1.0}}
    avoid = check_contract(load_contract(base), samples=24)
    allow = check_contract(load_contract({**base, "search": {"risk": "allow"}}), samples=24)
    lat = next(b for b in avoid.budgets if b.name == "latency_ms")
    assert lat.interval is not None and lat.predicted_by
    assert allow.feasible_candidates >= avoid.feasible_candidates
    assert allow.feasible_candidates - avoid.feasible_candidates <= lat.at_risk


def test_report_rows_old_and_new():
    old = BudgetRow.model_validate({"name": "latency_ms", "unit": "ms", "limit": 10, "achieved": 9, "pass": True,
                                    "source": "predicted", "basis": "contract"})
    assert old.result == "PASS" and old.interval is None  # a report from before intervals still loads
    new = BudgetRow.model_validate({"name": "latency_ms", "unit": "ms", "limit": 10, "achieved": 9, "pass": True,
                                    "source": "predicted", "basis": "contract", "result": "AT RISK",
                                    "interval": [7.0, 11.0], "path": "analogous core"})
    r = RunReport(contract="c", target="stm32l4r5", runtime="x-cube-ai", verdict="PASS", budgets=[new])
    back = RunReport.model_validate_json(r.to_json())
    assert back.budgets[0].result == "AT RISK" and back.budgets[0].interval == [7.0, 11.0]


def test_report_row_carries_result_interval_and_path():
    from chipfit.report.build import budget_row

    cost = profile("resnet8", target="stm32l4r5", input_shape=(32, 32, 3)).cost
    c = load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": "stm32l4r5",
                       "budgets": {"latency_ms": (cost.latency_ms + cost.latency_interval_ms[1]) / 2}})
    row = budget_row(next(b for b in check_budgets(cost, c) if b.name == "latency_ms"), cost)
    assert row.result == "AT RISK" and row.passed is True
    assert row.interval == list(cost.latency_interval_ms) and row.path == cost.predicted_by == "fitted board"
