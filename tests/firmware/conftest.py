"""Fixtures of the board farm without boards: the Arm GNU toolchain, QEMU and the TFLM tree (skipping with the
reason when absent; `make farm` installs them), and one measurement per (core, MLPerf Tiny model) shared by
every test of a session (the firmware objects themselves are cached across sessions, per core and flags)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from farm_helpers import MLPERF, farm_missing


@pytest.fixture(scope="session")
def farm() -> None:
    """Skip, with the reason, where the toolchain, QEMU, the TFLM tree or the tflite-micro interpreter are
    missing."""
    why = farm_missing()
    if why:
        pytest.skip(why)


@pytest.fixture(scope="session")
def qemu_mlperf(farm: None, mlperf_models: Path) -> Callable[[str, str], dict[str, Any]]:
    """``(core, model) -> {"path", "m": FirmwareMeasurement, "again": FirmwareRun, "inputs"}``: measured once
    per session (built on first use; a second run of the same image for the determinism check)."""
    from chipfit.firmware.run import run_qemu
    from chipfit.measure.modelfile import inspect_model
    from chipfit.measure.qemu import QemuRuntime, input_bytes

    done: dict[tuple[str, str], dict[str, Any]] = {}

    def get(core: str, name: str) -> dict[str, Any]:
        if (core, name) not in done:
            path = mlperf_models / MLPERF[name]
            rt = QemuRuntime(core)
            mf = inspect_model(path)
            feed = mf.random_inputs(7)
            m = rt.measure(mf, feed)
            fw = rt.firmware(mf)
            again = run_qemu(fw.elf, rt.core, input_bytes(mf, feed))
            done[core, name] = {"path": path, "m": m, "again": again, "inputs": feed, "firmware": fw}
        return done[core, name]

    return get
