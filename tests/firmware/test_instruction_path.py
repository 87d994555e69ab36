"""The instruction path of the cost model (issue 16 item 4): emulated instructions per layer x a board's cycles
per instruction. The shipped knowledge file must be what ``python -m chipfit.measure.instructions`` writes
(checked where the farm runs); the rest runs everywhere from the shipped file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from chipfit import create_target
from chipfit.cost.instructions import PATH_CALIBRATED, PATH_FITTED, fit_classes, instruction_tables
from chipfit.cost.model import CostModel
from chipfit.graph import from_tflite, from_torch

PUBLISHED_TFLM_MS = {"kws": 181.917, "ic": 704.225, "vww": 600.601, "ad": 10.0516}  # MLPerf Tiny v0.5, L4R5 @ 120


def test_shipped_file_is_the_generators_output(farm: None, mlperf_models: Path) -> None:
    """Cortex-M4, the core of every published CMSIS-NN row the cycles per instruction are fitted on, is measured
    again on the farm (its nine networks); the other cores' layers are read from the shipped file; every class fit,
    CPI and cross-validation figure is recomputed: the file must come out byte for byte as shipped. All four cores
    measured again (about 9 minutes with a cold firmware cache): ``python -m chipfit.measure.instructions --check``."""
    from chipfit.cost.instructions import CoreTable, tables_from_dict
    from chipfit.measure.instructions import assemble, measure_core, render, shipped_path

    shipped = shipped_path().read_text()
    tables = {c: CoreTable(c, t.layers, fit_classes(t.layers), t.models)
              for c, t in tables_from_dict(yaml.safe_load(shipped)).cores.items()}
    assert set(tables) == {"cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"}
    tables["cortex-m4"] = measure_core("cortex-m4", mlperf_models)
    assert shipped == render(assemble(tables)), (
        "knowledge/instructions.yaml differs from what the farm measures: run python -m chipfit.measure.instructions")


def test_no_fitted_number_without_its_rows() -> None:
    t = instruction_tables()
    assert {"cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"} <= set(t.cores)
    for (_board, runtime, _version), f in t.cpi.items():
        assert runtime in ("tflm-cmsis-nn", "microtvm-cmsis-nn") and f.core == "cortex-m4"
        assert f.per_bench and min(f.per_bench.values()) <= f.cpi <= max(f.per_bench.values())
    lo, hi = t.interval()
    assert 0.7 < lo < 1 < hi < 1.4  # leave-one-network-out, 8 published rows


@pytest.mark.parametrize("name", list(PUBLISHED_TFLM_MS))
def test_reference_models_on_the_l4r5_take_the_instruction_path(name: str, mlperf_models: Path) -> None:
    from farm_helpers import MLPERF

    c = CostModel(auto_calibration=False).estimate(from_tflite(mlperf_models / MLPERF[name]),
                                                   create_target("stm32l4r5"), runtime="tflm-cmsis-nn")
    assert c.predicted_by == PATH_FITTED and "cycles per instruction" in c.efficiency_source
    assert abs(c.latency_ms / PUBLISHED_TFLM_MS[name] - 1) < 0.3
    lo, hi = c.latency_interval_ms
    assert lo < c.latency_ms < hi
    assert sum(layer.latency_ms for layer in c.layers) == pytest.approx(c.latency_ms)


def _small() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, groups=8),
                               torch.nn.Flatten(), torch.nn.Linear(8 * 12 * 12, 10))


def test_other_stacks_and_boards_keep_their_paths() -> None:
    g = from_torch(_small(), (1, 1, 16, 16))
    m = CostModel(auto_calibration=False)
    assert m.estimate(g, create_target("stm32l4r5")).predicted_by == "fitted board"  # x-cube-ai: no CPI fit
    assert m.estimate(g, create_target("stm32l4r5"), runtime="tflm-cmsis-nn").predicted_by == PATH_FITTED
    other = m.estimate(g, create_target("stm32h743"), runtime="tflm-cmsis-nn")  # an M7: no published CPI
    assert not other.predicted_by.startswith("instructions")


def test_a_cached_board_calibration_takes_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chipfit.cost.calibration import CpiCalibration, cpi_calibration_path

    monkeypatch.setenv("CHIPFIT_CACHE_DIR", str(tmp_path))
    g = from_torch(_small(), (1, 1, 16, 16))
    t = create_target("stm32h743")
    CpiCalibration(t.core, t.clock_mhz, 1.25, {"kws": 1.2, "ic": 1.3}, target=t.name, port="/dev/ttyX").save(
        cpi_calibration_path(t.name, t.core, t.clock_mhz))
    c = CostModel().estimate(g, t, runtime="tflm-cmsis-nn")
    assert c.predicted_by == PATH_CALIBRATED and "/dev/ttyX" in c.efficiency_source
    assert c.latency_interval_ms is not None
    assert CostModel(auto_calibration=False).estimate(g, t, runtime="tflm-cmsis-nn").predicted_by != PATH_CALIBRATED
    assert json.loads(cpi_calibration_path(t.name, t.core, t.clock_mhz).read_text())["cpi"] == 1.25


def test_profile_json_names_the_path(mlperf_models: Path) -> None:
    from farm_helpers import MLPERF
    from typer.testing import CliRunner

    from chipfit.cli import app

    r = CliRunner().invoke(app, ["profile", str(mlperf_models / MLPERF["kws"]), "--target", "stm32l4r5",
                                 "--runtime", "tflm-cmsis-nn", "--json"])
    assert r.exit_code == 0, r.output
    d = yaml.safe_load(r.output)
    assert d["predicted_by"] == PATH_FITTED


def test_a_run_prices_with_the_board_cpi_it_pinned(tmp_path: Path) -> None:
    from chipfit.cost.calibration import CPI_RUN_FILE, CpiCalibration

    g = from_torch(_small(), (1, 1, 16, 16))
    t = create_target("stm32h743")
    assert CostModel.for_run(tmp_path).estimate(g, t, runtime="tflm-cmsis-nn").predicted_by != PATH_CALIBRATED
    CpiCalibration(t.core, t.clock_mhz, 1.25, {"kws": 1.25}).save(tmp_path / CPI_RUN_FILE)
    c = CostModel.for_run(tmp_path).estimate(g, t, runtime="tflm-cmsis-nn")
    assert c.predicted_by == PATH_CALIBRATED
    slower = CpiCalibration(t.core, t.clock_mhz, 2.5, {"kws": 2.5}).save(tmp_path / CPI_RUN_FILE)
    assert CostModel.for_run(slower.parent).estimate(g, t, runtime="tflm-cmsis-nn").latency_ms == pytest.approx(
        2 * c.latency_ms)
