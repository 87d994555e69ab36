"""Firmware for emulated and real Cortex-M boards: TFLM + CMSIS-NN, the model as a C array and a harness
that times every operator (:mod:`chipfit.firmware.build`), run under QEMU on Arm's MPS2/MPS3 boards with
instruction counting (:mod:`chipfit.firmware.run`), or flashed on a board and driven over a serial port."""

from __future__ import annotations

from chipfit.firmware.cores import CORES, Core, get_core
from chipfit.firmware.sources import tflm_source
from chipfit.firmware.toolchain import FirmwareError, missing

__all__ = ["CORES", "Core", "FirmwareError", "get_core", "missing", "tflm_source"]
