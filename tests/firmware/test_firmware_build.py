"""Firmware pieces that need no toolchain: cores, the harness's output format, op resolution, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from chipfit.errors import UsageError
from chipfit.firmware.cores import CORES, get_core
from chipfit.firmware.run import SAMPLE, parse_output
from chipfit.firmware.toolchain import FirmwareError


def test_every_core_has_a_board_and_a_tick_factor() -> None:
    assert set(CORES) == {"cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"}
    assert get_core("m4").instructions_per_tick == 40.0 and get_core("M33").qemu_machine == "mps2-an505"
    with pytest.raises(UsageError, match=r"unknown core 'cortex-m5'.*Did you mean"):
        get_core("cortex-m5")


def test_harness_output_is_parsed_and_errors_are_named() -> None:
    core = get_core("cortex-m4")
    r = parse_output(SAMPLE, core)
    assert r.per_op() == [("CONV_2D", 192411 * 40), ("SOFTMAX", 63 * 40)] and r.arena_bytes == 22820
    with pytest.raises(FirmwareError, match=r"reported: fault.*memory map"):
        parse_output("CHIPFIT calibrate instructions 200000 ticks 5000\nCHIPFIT error fault\n", core)
    with pytest.raises(FirmwareError, match="stopped before its 'CHIPFIT end'"):
        parse_output(SAMPLE.replace("CHIPFIT end\n", ""), core)
    # a board whose clock differs from the table: the calibration loop's figure wins
    r = parse_output(SAMPLE.replace("ticks 5001", "ticks 4000"), core)
    assert r.instructions_per_tick == 50.0


def test_missing_sources_say_where_to_get_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from chipfit.firmware.sources import tflm_source

    monkeypatch.setenv("CHIPFIT_TFLM_SRC", str(tmp_path))
    with pytest.raises(FirmwareError, match=r"not found.*CHIPFIT_TFLM_SRC.*tflite-micro at 90b983c2b.*CMSIS-NN at "):
        tflm_source()


def test_an_op_tflm_cannot_register_is_named() -> None:
    from farm_helpers import farm_missing

    from chipfit.firmware.build import kernel_sources
    from chipfit.firmware.sources import tflm_source

    if farm_missing(qemu=False):
        pytest.skip(str(farm_missing(qemu=False)))
    srcs, calls = kernel_sources(["CONV_2D", "RESHAPE", "CONV_2D"], tflm_source())
    assert calls == [("AddConv2D", "CONV_2D"), ("AddReshape", "RESHAPE")]
    assert "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc" in srcs
    assert "tensorflow/lite/micro/kernels/conv_common.cc" in srcs
    with pytest.raises(FirmwareError, match="uses CUSTOM:Foo, which TFLM's MicroMutableOpResolver cannot"):
        kernel_sources(["CUSTOM:Foo"], tflm_source())


def test_board_option_is_checked() -> None:
    from typer.testing import CliRunner

    from chipfit.cli import app

    res = CliRunner().invoke(app, ["measure", "x.tflite", "--board", "stm32:f4"])
    assert res.exit_code == 2
