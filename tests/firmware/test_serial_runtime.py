"""The serial protocol end to end: the serial build of the firmware on QEMU's emulated Cortex-M4 with its UART
on a pseudo-terminal, driven by `chipfit measure --serial` as a real board on /dev/ttyACM0 would be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from farm_helpers import MLPERF

from chipfit.errors import MeasurementError

pytestmark = pytest.mark.slow


def test_serial_protocol_through_a_pseudo_terminal(farm: None, mlperf_models: Path) -> None:
    from typer.testing import CliRunner

    from chipfit.cli import app
    from chipfit.firmware.build import build_firmware
    from chipfit.firmware.run import QemuSerialBoard
    from chipfit.measure.qemu import QemuRuntime
    from chipfit.measure.serial import SerialRuntime

    kws, ad = mlperf_models / MLPERF["kws"], mlperf_models / MLPERF["ad"]
    fw = build_firmware(kws, "cortex-m4", serial=True)
    with QemuSerialBoard(fw.elf, "cortex-m4") as port:
        res = CliRunner().invoke(app, ["measure", str(kws), "--serial", port, "--core", "cortex-m4",
                                       "--clock-mhz", "25", "--rounds", "2", "--json"])
        assert res.exit_code == 0, res.output
        d = json.loads(res.stdout)
        assert d["bit_exact"] is True and d["arena_bytes"] == 22_820 and d["runs"] == 2
        assert d["board"] == f"serial:{port}" and [op for op, _ in d["ops"]][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
        # no DWT under QEMU: cycles are SysTick ticks (25 MHz board clock, 40 instructions each); the same
        # Invoke() as the semihosting build's on the same input (seed 0), to the tick
        semihosted, _, _ = QemuRuntime("cortex-m4").run(kws, seed=0)
        assert d["cycles"] * 40 == semihosted.instructions
        assert d["latency_ms"] == pytest.approx(d["cycles"] / 25e3)
        # a board flashed with another model is refused, naming both
        with pytest.raises(MeasurementError, match=r"runs another model .* Flash its firmware"):
            SerialRuntime(port, "cortex-m4", clock_mhz=25).measure(ad, rounds=1)


def test_serial_options_are_checked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from chipfit.cli import app

    run = CliRunner().invoke
    assert run(app, ["measure", "m.tflite", "--serial", "/dev/ttyACM9"]).exit_code == 2  # no --core/--clock-mhz
    assert run(app, ["measure", "m.tflite", "--core", "cortex-m4"]).exit_code == 2  # --core without --serial
    from chipfit.measure.serial import SerialLink

    with pytest.raises(MeasurementError, match="cannot open serial port"):
        SerialLink(str(tmp_path / "ttyACM9"))
