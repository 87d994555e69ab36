"""Budget rows say how each figure was obtained: the prediction path of latency, TFLM's allocator for RAM."""

from __future__ import annotations

from chipfit import create_target, load_contract
from chipfit.budgets import check_budgets
from chipfit.cost import CostModel
from chipfit.report.build import budget_row
from chipfit.space import create_space, reference_config


def _rows(target: str) -> tuple[dict[str, str], object]:
    c = load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": target,
                       "budgets": {"latency_ms": 50, "ram_kb": 256}})
    t = create_target(target)
    cost = CostModel().estimate(create_space(c.input_spec(), 10).graph(reference_config("resnet8")), t)
    return {b.name: budget_row(b, cost).source for b in check_budgets(cost, c, target=t)}, cost


def test_latency_names_its_prediction_path_and_tflm_ram_its_allocator():
    rows, cost = _rows("stm32l4r5.tflm-cmsis-nn")
    assert cost.predicted_by and f"latency by {cost.predicted_by}" in rows["latency_ms"]
    assert "TFLM's arena plan and persistent allocations" in rows["ram_kb"]
    assert rows["flash_kb"].startswith("predicted (cost model, analytical")
    rows, _ = _rows("stm32l4r5.x-cube-ai")  # a closed runtime: RAM stays the analytical figure
    assert rows["ram_kb"].startswith("predicted (cost model, analytical")
