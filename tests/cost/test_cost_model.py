"""The analytical cost model: conventions, monotonicity, energy and battery arithmetic."""

from __future__ import annotations

import math

import pytest
from torch import nn

from chipfit import create_target, load_contract, profile
from chipfit.budgets import check_budgets, constraints
from chipfit.contract.schema import DutyCycle
from chipfit.cost import CostModel
from chipfit.cost.battery import battery_days, energy_budget_mj
from chipfit.graph import from_torch


def conv_net(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


@pytest.fixture(scope="module")
def l4r5():
    return create_target("stm32l4r5")


def test_latency_grows_with_macs(l4r5):
    costs = [CostModel().estimate(from_torch(conv_net(w), (1, 3, 16, 16)), l4r5) for w in (4, 8, 16, 32)]
    lat = [c.latency_ms for c in costs]
    assert lat == sorted(lat) and lat[-1] > 10 * lat[0]


def test_energy_is_latency_times_power(l4r5):
    c = CostModel().estimate(from_torch(conv_net(8), (1, 3, 16, 16)), l4r5)
    power_mw, how, path = CostModel._power(l4r5, c.runtime, c.runtime_version)
    assert math.isclose(c.energy_mj, c.latency_ms / 1e3 * power_mw, rel_tol=1e-9)
    assert how.startswith("published energy / latency") and c.power_source == how  # a fitted board's own power
    assert path == "fitted board" and c.energy_predicted_by.endswith("x power: fitted board")
    declared = create_target({"name": "b", "core": "cortex-m4", "clock_mhz": 80, "sram_kb": 256, "flash_kb": 1024,
                              "runtime": "tflm", "active_power_mw": 20})
    c2 = CostModel().estimate(from_torch(conv_net(8), (1, 3, 16, 16)), declared)
    assert math.isclose(c2.energy_mj, c2.latency_ms / 1e3 * 20, rel_tol=1e-9)  # a declared figure is kept


def test_flash_counts_weights_at_deployed_dtype(l4r5):
    g = from_torch(conv_net(16), (1, 3, 16, 16))
    i8 = CostModel().estimate(g, l4r5, dtype="int8")
    f32 = CostModel().estimate(g, l4r5, dtype="float32")
    assert i8.weights_bytes == g.weights + 4 * g.biases
    assert f32.weights_bytes == 4 * g.weights + 4 * g.biases
    assert f32.arena_bytes == 4 * i8.arena_bytes
    assert f32.latency_ms > i8.latency_ms


def test_runtime_choice_matters(l4r5):
    g = from_torch(conv_net(16), (1, 3, 32, 32))
    lat = {r: CostModel().estimate(g, l4r5, runtime=r).latency_ms
           for r in ("plumerai", "x-cube-ai@7.1", "x-cube-ai", "tflm")}
    assert lat["plumerai"] < lat["x-cube-ai@7.1"] < lat["tflm"]
    assert lat["x-cube-ai"] < lat["x-cube-ai@7.1"]  # the version matters too (published 7.1 -> 9.0/10.2)


def test_dtype_unsupported_is_reported(l4r5):
    c = CostModel().estimate(from_torch(conv_net(4), (1, 3, 8, 8)), l4r5, runtime="plumerai", dtype="float32")
    assert any("dtype float32" in u for u in c.unsupported)


def test_accelerator_offloads(tmp_path):
    g = from_torch(conv_net(32), (1, 3, 32, 32))
    npu = CostModel().estimate(g, create_target("alif-e7"), runtime="vela")
    cpu = CostModel().estimate(g, create_target("alif-e7"), runtime="tflm-cmsis-nn")
    assert npu.latency_ms < cpu.latency_ms / 5
    assert {layer.unit for layer in npu.layers if layer.macs} == {"ethos-u55"}


def test_battery_arithmetic():
    d = DutyCycle(inferences_per_hour=3600, battery_mah=1000, battery_volts=3.0, min_battery_days=365)
    budget = energy_budget_mj(d, sleep_power_uw=4.0)
    # 1000 mAh x 3 V = 10.8 kJ over 365 days = 0.3425 mW average; minus 4 uW sleep; at 1 inference/s
    assert math.isclose(budget, 10.8e6 / (365 * 86400) - 0.004, rel_tol=1e-9)
    assert math.isclose(battery_days(budget, 0.0, d, sleep_power_uw=4.0), 365, rel_tol=1e-9)


def test_sleep_power_alone_can_make_battery_infeasible():
    c = load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": "rpi4",
                       "duty_cycle": {"inferences_per_hour": 1, "battery_mah": 100, "min_battery_days": 30}})
    cost = profile("resnet8", target="rpi4", contract=c, input_shape=(8, 8, 1)).cost
    energy = next(b for b in check_budgets(cost, c) if b.name == "energy_mj")
    assert energy.limit <= 0 and energy.passed is False


def test_constraints_follow_optuna_convention():
    c = load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": "stm32h743",
                       "budgets": {"latency_ms": 1000, "ram_kb": 1, "accuracy": 0.9}})
    cost = profile("resnet8", target="stm32h743", contract=c, input_shape=(8, 8, 1)).cost
    checks = check_budgets(cost, c)
    cons = constraints(checks)
    assert cons["latency_ms"] <= 0 < cons["ram_kb"]
    assert "accuracy" not in cons  # pending until trained
    acc = next(b for b in checks if b.name == "accuracy")
    assert acc.source == "pending" and acc.passed is None
    ram = next(b for b in checks if b.name == "ram_kb")
    assert math.isclose(ram.margin, (1 - cost.ram_bytes / 1024) / 1)


def test_device_limits_apply_without_budgets():
    c = load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": "nrf52840"})
    cost = profile("mobilenetv1-0.25", target="nrf52840", contract=c, input_shape=(96, 96, 3)).cost
    checks = {b.name: b for b in check_budgets(cost, c)}
    assert checks["ram_kb"].limit == 256 and checks["flash_kb"].limit == 1024
    assert checks["ram_kb"].basis.startswith("device")


def test_profile_of_torch_module_and_layers_sum():
    r = profile(conv_net(8), target="rp2040", input_shape=(1, 3, 16, 16))
    assert math.isclose(sum(layer.latency_ms for layer in r.cost.layers), r.cost.latency_ms, rel_tol=1e-9)
    d = r.to_dict()
    assert d["source"] == "predicted" and d["target"] == "rp2040" and len(d["layers"]) == len(r.cost.layers)


@pytest.mark.parametrize("device", ["stm32l4r5", "stm32h7a3", "stm32f746"])
def test_mlperf_reference_latency_within_published_range(mlperf_models, device):
    """Boards in device-facts.md: the prediction for KWS / IC lands within 30 % of the published figure the
    efficiency was fitted to (a sanity check of the plumbing, not a claim about unseen boards)."""
    published = {"stm32l4r5": {"kws": 72.7, "ic": 222}, "stm32h7a3": {"kws": 16.4, "ic": 54.9},
                 "stm32f746": {"kws": 17.75, "ic": 62.88}}[device]
    runtime = "plumerai@2023.05" if device == "stm32f746" else "x-cube-ai@8.0"  # the versions of these figures
    files = {"kws": "kws/kws_ref_model.tflite", "ic": "ic/pretrainedResnet_quant.tflite"}
    for model, ms in published.items():
        r = profile(mlperf_models / files[model], target=device, runtime=runtime)
        assert abs(r.cost.latency_ms / ms - 1) < 0.3, (device, model, r.cost.latency_ms, ms)
