"""The memory system of a board (flash wait states, caches, TCM, where weights and arena live): sourced facts in
the profiles, and what they cost per cycle."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import yaml
from typer.testing import CliRunner

from chipfit import create_target
from chipfit.cli import app
from chipfit.cost.model import CostModel
from chipfit.errors import TargetError
from chipfit.graph import from_torch
from chipfit.targets import fit as fitmod
from chipfit.targets.memory import STALL_PER_WAIT_STATE, MemorySystem, memory_factor


@pytest.fixture(scope="module")
def tiny_graph():
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3))
    return from_torch(net, (1, 3, 24, 24))


MCU_PROFILES = ("stm32f746", "stm32h743", "stm32h7a3", "stm32l4r5", "apollo4", "rp2040", "nrf52840", "esp32s3")


def _board(clock_mhz: float, *, cache: bool) -> dict:
    return {"name": "slowflash", "core": "cortex-m4", "clock_mhz": clock_mhz, "sram_kb": 256, "flash_kb": 1024,
            "runtime": "x-cube-ai",
            "memory": {"flash_wait_states": {"value": 1, "source": "test: 1 WS at 40 MHz"},
                       "flash_mhz_per_wait_state": {"value": 25, "source": "test: latency table"},
                       "flash_cache": {"value": cache, "source": "test"}}}


@pytest.mark.parametrize("name", MCU_PROFILES)
def test_memory_facts_carry_sources(name):
    """Every memory fact of a built-in profile names its source; an unverified one says est. and why."""
    data = yaml.safe_load(resources.files("chipfit.targets").joinpath(f"profiles/{name}.yaml").read_text())
    assert "memory" in data, name
    for key, fact in data["memory"].items():
        assert isinstance(fact, dict) and fact.get("source"), (name, key)
        src = fact["source"]
        assert src.startswith(("[", "est.:", "der.:")), (name, key, src)
    t = create_target(name)
    assert t.memory is not None and t.memory.flash_cache is not None
    for key in data["memory"]:
        assert t.sources[f"memory.{key}"] == data["memory"][key]["source"]
    assert "memory" in t.to_dict()


def test_wait_states_follow_the_clock():
    l4, h7 = create_target("stm32l4r5").memory, create_target("stm32h7a3").memory
    assert (l4.wait_states(120), l4.wait_states(70), l4.wait_states(20)) == (5, 3, 0)
    assert (h7.wait_states(280), h7.wait_states(40)) == (6, 0)
    m = MemorySystem(flash_wait_states=3, clock_mhz=100)  # no table: the access time scales with the clock
    assert m.wait_states(100) == 3 and m.wait_states(200) == 7 and m.wait_states(25) == 0


def test_cached_flash_hides_wait_states_uncached_pays_them():
    cached = MemorySystem(flash_wait_states=6, flash_cache=True)
    assert memory_factor(cached, 280)[0] == 1.0
    slow = MemorySystem(flash_mhz_per_wait_state=25, flash_cache=False)
    f40, f150 = memory_factor(slow, 40)[0], memory_factor(slow, 150)[0]
    assert f40 == 1 + STALL_PER_WAIT_STATE * 1 and f150 == 1 + STALL_PER_WAIT_STATE * 5
    assert memory_factor(MemorySystem(flash_wait_states=5, flash_cache=False, weights_in="sram"), 150)[0] == 1.0
    assert memory_factor(None, 150)[0] == 1.0


def test_published_boards_pay_no_wait_states():
    """The fit rests on boards whose flash is cached (the published rows show the same cycles at two clocks):
    their memory factor is 1, so it leaves the cross-validation as it was."""
    d = yaml.safe_load(fitmod.OUT_PATH.read_text())
    assert {b: v["memory_factor"] for b, v in d["boards"].items()} == {b: 1.0 for b in d["boards"]}


def test_more_wait_states_predict_slower_per_cycle(tiny_graph):
    """A board whose uncached flash needs more wait states at a higher clock takes more cycles for the same model;
    with the flash cached the cycles do not depend on the clock."""
    def cycles(clock: float, cache: bool) -> tuple[float, object]:
        c = CostModel(auto_calibration=False).estimate(tiny_graph, create_target(_board(clock, cache=cache)))
        return c.latency_ms * clock, c

    lo, _ = cycles(40, False)
    hi, c_hi = cycles(150, False)
    assert hi > 1.5 * lo
    assert c_hi.memory_factor == pytest.approx(1 + STALL_PER_WAIT_STATE * 5)
    assert "uncached flash wait states" in c_hi.memory_note and "memory system" in c_hi.efficiency_source
    a, c_a = cycles(40, True)
    b, _ = cycles(150, True)
    assert a == pytest.approx(b, rel=0.02) and c_a.memory_factor == 1.0
    lat_lo, lat_hi = c_hi.latency_interval_ms
    assert lat_lo < c_hi.latency_ms / c_hi.memory_factor * 1.01 and lat_hi > c_hi.latency_ms


@pytest.mark.parametrize(("memory", "needle"), [
    ({"weights_in": "rom"}, "memory.weights_in"),
    ({"flash_cache": "yes"}, "memory.flash_cache"),
    ({"flash_wait_states": 2.5}, "whole number"),
    ({"dtcm_kb": -1}, "memory.dtcm_kb"),
])
def test_bad_memory_facts_are_named(memory, needle):
    spec = {**_board(100, cache=True), "memory": memory}
    with pytest.raises(TargetError, match=needle):
        create_target(spec)


def test_profile_json_states_memory_and_energy_path(tmp_path):
    res = CliRunner().invoke(app, ["profile", "resnet8", "--target", "stm32h7a3", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["memory_factor"] == 1.0 and "hidden by the flash cache" in d["memory_note"]
    assert " x power: " in d["energy_predicted_by"] and d["power_source"]
    lo, hi = d["energy_interval_mj"]
    assert lo < d["energy_mj"] < hi
    p = tmp_path / "slow.yaml"
    p.write_text(yaml.safe_dump(_board(150, cache=False)))
    d2 = json.loads(CliRunner().invoke(app, ["profile", "resnet8", "--target", str(p), "--json"]).output)
    assert d2["memory_factor"] > 1 and d2["latency_interval_ms"][0] < d2["latency_ms"]


def test_readme_memory_block_is_a_valid_target_fact():
    """The `memory:` example in the README is accepted as written."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = next(m.group(1) for m in re.finditer(r"```yaml\n(.*?)```", text, re.S) if m.group(1).startswith("memory:"))
    spec = {**_board(120, cache=True), **yaml.safe_load(block)}
    t = create_target(spec)
    assert t.memory.wait_states(120) == 5 and t.memory.flash_cache and t.memory.arena_in == "sram"
    assert memory_factor(t.memory, 120)[0] == 1.0


def test_devices_show_lists_memory_and_power_model_facts():
    out = CliRunner().invoke(app, ["devices", "show", "stm32l4r5"], terminal_width=250).output
    for fact in ("memory.flash_wait_states", "memory.flash_cache", "memory.arena_in", "run_current_ua_per_mhz",
                 "supply_v"):
        assert fact in out, fact
    d = json.loads(CliRunner().invoke(app, ["devices", "show", "stm32l4r5", "--json"]).output)
    assert d["memory"]["flash_wait_states"] == 5 and d["sources"]["memory.flash_cache"].startswith("der.:")
