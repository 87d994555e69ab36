"""Bring-your-own-board calibration end to end: `chipfit calibrate --serial` against QEMU's emulated Cortex-M4
on a pseudo-terminal (the serial build of the kws firmware), then `profile` on that target takes the board's
cycles per instruction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from farm_helpers import MLPERF

pytestmark = pytest.mark.slow


def test_calibrate_serial_then_profile_uses_the_board(farm: None, mlperf_models: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from chipfit.cli import app
    from chipfit.cost.instructions import PATH_CALIBRATED
    from chipfit.firmware.build import build_firmware
    from chipfit.firmware.run import QemuSerialBoard

    monkeypatch.setenv("CHIPFIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CHIPFIT_SHARED_DATA", str(mlperf_models.parent))
    kws = mlperf_models / MLPERF["kws"]
    run = CliRunner().invoke
    with QemuSerialBoard(build_firmware(kws, "cortex-m4", serial=True).elf, "cortex-m4") as port:
        # no --model: the board's model is found among the reference models by its size (PING)
        res = run(app, ["calibrate", "--serial", port, "--core", "m4", "--target", "stm32l4r5", "--rounds", "1",
                        "--json"])
        assert res.exit_code == 0, res.output
        cal = json.loads(res.stdout)
        measured = json.loads(run(app, ["measure", str(kws), "--serial", port, "--core", "cortex-m4",
                                        "--clock-mhz", "120", "--rounds", "1", "--json"]).stdout)
    # QEMU's SysTick ticks once per 40 instructions (25 MHz board clock, 1 instruction per ns): that is the CPI
    # this "board" reports, to the rounding of per-operator ticks
    assert cal["cpi"] == pytest.approx(1 / 40, rel=2e-3) and list(cal["per_model"]) == ["kws_ref_model"]
    assert cal["target"] == "stm32l4r5" and cal["clock_mhz"] == 120 and Path(cal["path"]).is_file()
    prof = run(app, ["profile", str(kws), "--target", "stm32l4r5", "--runtime", "tflm-cmsis-nn", "--json"])
    assert prof.exit_code == 0, prof.output
    d = json.loads(prof.stdout)
    assert d["predicted_by"] == PATH_CALIBRATED
    assert d["latency_ms"] == pytest.approx(measured["latency_ms"], rel=0.01)  # every layer in the table
    # other runtimes on the same board are not priced by a TFLM board calibration
    other = json.loads(run(app, ["profile", str(kws), "--target", "stm32l4r5", "--json"]).stdout)
    assert other["predicted_by"] != PATH_CALIBRATED


def test_calibrate_serial_options_are_checked() -> None:
    from typer.testing import CliRunner

    from chipfit.cli import app

    run = CliRunner().invoke
    r = run(app, ["calibrate", "--serial", "/dev/ttyACM9"])
    assert r.exit_code == 2 and "--core" in r.output
    r = run(app, ["calibrate", "--serial", "/dev/ttyACM9", "--core", "cortex-m4"])
    assert r.exit_code == 2 and "--clock-mhz" in r.output
    r = run(app, ["calibrate", "--serial", "/dev/ttyACM9", "--core", "cortex-m7", "--target", "stm32l4r5"])
    assert r.exit_code == 2 and "cortex-m4" in r.output
