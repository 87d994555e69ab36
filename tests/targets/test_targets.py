"""Conformance over every registered target, target files, the registry and the knowledge base."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from chipfit import create_target, list_targets
from chipfit.cli import app
from chipfit.cost import CostModel
from chipfit.errors import TargetError
from chipfit.graph import from_torch
from chipfit.targets.knowledge import MAC_CLASSES, core_types, efficiency, published, reference_models, runtimes

REQUIRED = ["stm32f746", "stm32h743", "stm32h7a3", "stm32l4r5", "nrf52840", "rp2040", "esp32s3", "apollo4",
            "alif-e7", "rpi4", "rpi5", "jetson-nano", "jetson-orin-nano", "coral-edgetpu", "host"]
CORES = ["cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "cortex-m85", "cortex-a53",
         "cortex-a72", "cortex-a76", "xtensa-lx7", "x86-64"]
RUNTIMES = ["tflm", "tflm-cmsis-nn", "x-cube-ai", "plumerai", "esp-nn", "vela", "tflite-xnnpack", "onnxruntime",
            "tensorrt", "edgetpu"]


def test_catalog_has_required_devices_cores_runtimes():
    assert set(REQUIRED) <= set(list_targets())
    assert set(CORES) <= set(core_types())
    assert set(RUNTIMES) <= set(runtimes())


@pytest.fixture(scope="module")
def tiny_graph():
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, stride=2), torch.nn.ReLU(),
                            torch.nn.Conv2d(8, 8, 3, groups=8), torch.nn.Flatten(), torch.nn.Linear(8 * 5 * 5, 4))
    return from_torch(m, (1, 1, 16, 16))


@pytest.mark.parametrize("name", sorted(set(REQUIRED)))
def test_target_conformance(name, tiny_graph):
    t = create_target(name)
    for key in ("clock_mhz", "sram_kb", "flash_kb", "active_power_mw", "sleep_power_uw"):
        assert getattr(t, key) > 0
        assert t.sources.get(key), f"{name}.{key} has no source"
    assert t.core in core_types()
    for r in t.runtimes:
        info = runtimes()[r]
        assert t.core in info.cores
        if info.accelerators:
            assert t.accelerator is not None and t.accelerator.kind in info.accelerators
        cost = CostModel().estimate(tiny_graph, t, runtime=r)
        assert cost.latency_ms > 0 and cost.energy_mj > 0 and cost.ram_bytes > 0 and cost.flash_bytes > 0
        assert cost.source == "predicted" and cost.efficiency_source
        assert sum(layer.macs for layer in cost.layers) == tiny_graph.macs
        e = efficiency(t.core, r)
        assert all(e.macs_per_cycle[c] > 0 for c in MAC_CLASSES)


def test_runtime_tag_and_did_you_mean():
    assert create_target("rpi4.onnxruntime").runtime == "onnxruntime"
    with pytest.raises(TargetError, match="Did you mean 'stm32h743'"):
        create_target("stm32h734")
    with pytest.raises(TargetError, match="runtime"):
        create_target("stm32l4r5.tensorrt")


def test_list_targets_pattern():
    assert list_targets("jetson*") == ["jetson-nano", "jetson-orin-nano"]


def test_declared_board_file(tmp_path):
    p = tmp_path / "board.yaml"
    p.write_text("name: my-board\ncore: cortex-m33\nclock_mhz: 160\nsram_kb: 786\nflash_kb: 2048\n"
                 "runtime: tflm-cmsis-nn\nactive_power_mw: 45\nsleep_power_uw: 6\n")
    t = create_target(p)
    facts = (t.name, t.core, t.clock_mhz, t.runtime, t.active_power_mw)
    assert facts == ("my-board", "cortex-m33", 160, "tflm-cmsis-nn", 45)
    assert t.sources["clock_mhz"] == f"declared in {p}"
    # the same knowledge serves declared boards: an M33 borrows the fitted M4 CMSIS-NN efficiency
    e = efficiency("cortex-m33", "tflm-cmsis-nn")
    assert e.path == "analogous core" and "fit on cortex-m4" in e.source


def test_declared_board_defaults_are_labelled(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text("name: b\ncore: cortex-m4\nclock_mhz: 80\nsram_kb: 128\nflash_kb: 512\nruntime: tflm\n")
    t = create_target(p)
    assert t.sources["active_power_mw"].startswith("est.")


@pytest.mark.parametrize(("text", "needle"), [
    ("name: b\ncore: cortex-m9\nclock_mhz: 80\nsram_kb: 1\nflash_kb: 1\nruntime: tflm\n", "core"),
    ("name: b\ncore: cortex-m4\nclock_mhz: -80\nsram_kb: 1\nflash_kb: 1\nruntime: tflm\n", "clock_mhz"),
    ("name: b\ncore: cortex-m4\nclock_mhz: 80\nsram_kb: 1\nflash_kb: 1\nruntime: tensorrt\n", "runtime"),
    ("name: b\ncore: cortex-m4\nclock_mhz: 80\nsram_kb: 1\nflash_kb: 1\nruntime: tflm\nclock: 3\n", "clock"),
    ("name: b\ncore: cortex-m4\nclock_mhz: 80\nsram_kb: 1\nflash_kb: 1\n", "runtime"),
])
def test_bad_target_files(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(TargetError) as exc:
        create_target(p)
    assert needle in str(exc.value)
    res = CliRunner().invoke(app, ["profile", "resnet8", "--target", str(p)])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_builtin_profiles_source_every_figure():
    from importlib import resources

    import yaml

    for f in resources.files("chipfit.targets").joinpath("profiles").iterdir():
        data = yaml.safe_load(f.read_text())
        for key, value in data.items():
            if isinstance(value, int | float):
                pytest.fail(f"{f.name}: {key} has no source")
            if isinstance(value, dict) and "value" in value:
                assert value.get("source"), f"{f.name}: {key}"


def test_published_fit_reproduces_its_data():
    """The fitted efficiencies reproduce the published latencies they were fitted to within 25 %."""
    refs = reference_models()
    for row in published():
        eff = efficiency(row["core"], row["runtime"]).macs_per_cycle
        rt = runtimes()[row["runtime"]]
        for model, ms in row["latency_ms"].items():
            r = refs[model]
            cycles = sum(r[c] * row.get("scale", 1.0) / eff[c] for c in MAC_CLASSES)
            cycles += r["nodes"] * rt.node_overhead_cycles + r["other_elements"] * rt.element_cycles
            pred = cycles / (row["clock_mhz"] * 1e3)
            assert abs(pred / ms - 1) < 0.25, (row["board"], row["runtime"], model, pred, ms)


def test_reference_breakdown_matches_files(mlperf_models):
    from chipfit.graph import from_tflite
    from chipfit.graph.opgraph import OpClass

    for key, ref in reference_models().items():
        g = from_tflite(mlperf_models / ref["file"])
        by = g.macs_by_class()
        assert {c: by.get(c, 0) for c in MAC_CLASSES} == {c: ref[c] for c in MAC_CLASSES}, key
        assert len(g.nodes) == ref["nodes"]
        other = sum(g.tensors[n.outputs[0]].numel for n in g.nodes
                    if not n.op.counts_macs and n.op is not OpClass.RESHAPE)
        assert other == ref["other_elements"]


def test_cli_devices_json_and_show():
    r = CliRunner().invoke(app, ["devices", "--json"])
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert {d["name"] for d in data} >= set(REQUIRED)
    for d in data:
        for key in ("name", "core", "clock_mhz", "sram_kb", "flash_kb", "runtimes", "sources"):
            assert key in d
    r = CliRunner().invoke(app, ["devices", "stm32*", "--json"])
    assert [d["name"] for d in json.loads(r.stdout)] == ["stm32f746", "stm32h743", "stm32h7a3", "stm32l4r5"]
    r = CliRunner().invoke(app, ["devices", "show", "alif-e7", "--json"])
    shown = json.loads(r.stdout)
    assert shown["accelerator"]["kind"] == "ethos-u55" and "vela" in shown["efficiency"]
    r = CliRunner().invoke(app, ["devices", "show", "nrf52480"])
    assert r.exit_code == 2 and "nrf52840" in r.output
