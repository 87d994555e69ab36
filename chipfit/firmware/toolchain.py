"""Where the Arm GNU toolchain, QEMU and the TFLM + CMSIS-NN sources are, and why not when they are absent.

>>> isinstance(missing(), (str, type(None)))
True
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from chipfit.errors import MeasurementError

TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-ar", "qemu-system-arm")
INSTALL = ("as root: `make farm`, or apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
           "libstdc++-arm-none-eabi-newlib qemu-system-arm")
# The commits of the self-contained tree (../shared/third_party/tflm), as TFLM pins them
PINNED = {
    "tflite-micro": "https://github.com/tensorflow/tflite-micro at 90b983c2b",
    "CMSIS-NN": "https://github.com/ARM-software/CMSIS-NN at 4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae",
    "CMSIS_6": "https://github.com/ARM-software/CMSIS_6 at 5782d6f8057906d360f4b95ec08a2354afe5c9b9",
    "flatbuffers": "https://github.com/google/flatbuffers at v25.9.23 (with TFLM's flatbuffers.patch)",
    "gemmlowp": "https://github.com/google/gemmlowp at 719139ce755a0f31cbf1c37f7f98adcc7fc9f425",
    "ruy": "https://github.com/google/ruy at d37128311b445e758136b8602d1bbd2a755e115d",
}


class FirmwareError(MeasurementError):
    """A firmware that cannot be generated, built or run (missing toolchain or sources, a compile error, a
    fault on the emulated core)."""


def missing(qemu: bool = True) -> str | None:
    """``None`` when the toolchain (and QEMU, with ``qemu``) are on PATH, else what is missing and how to
    install it."""
    need = TOOLS if qemu else TOOLS[:3]
    absent = [t for t in need if shutil.which(t) is None]
    if absent:
        return f"{', '.join(absent)} not found on PATH; install {INSTALL}"
    return None


def require(qemu: bool = True) -> None:
    """Raise :class:`FirmwareError` when :func:`missing` says something is."""
    why = missing(qemu)
    if why:
        raise FirmwareError(why)


@functools.cache
def gcc_version() -> str:
    """``arm-none-eabi-gcc -dumpfullversion`` (part of every cache key)."""
    require(qemu=False)
    r = subprocess.run(["arm-none-eabi-gcc", "-dumpfullversion"], capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


def tflm_source() -> Path:
    """The TFLM + CMSIS-NN source tree: ``$CHIPFIT_TFLM_SRC`` when set (and only there), else
    ``../shared/third_party/tflm`` beside the repository (or the working directory). Nothing is fetched: the
    error says where to get the sources at the pinned commits."""
    env = os.environ.get("CHIPFIT_TFLM_SRC")
    candidates = [Path(env)] if env else [Path(__file__).resolve().parents[3] / "shared" / "third_party" / "tflm",
                                         Path.cwd().parent / "shared" / "third_party" / "tflm"]
    for c in candidates:
        if (c / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file() and \
                (c / "third_party" / "cmsis_nn" / "Include").is_dir():
            return c.resolve()
    where = ", ".join(str(c) for c in candidates)
    pins = "; ".join(f"{k}: {v}" for k, v in PINNED.items())
    raise FirmwareError(
        f"TFLM + CMSIS-NN sources not found (looked in {where}; expected tensorflow/lite/micro/ and "
        f"third_party/cmsis_nn/ there). Set CHIPFIT_TFLM_SRC to a tree made by TFLM's "
        f"tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py with "
        f"--makefile_options='TARGET=cortex_m_generic OPTIMIZED_KERNEL_DIR=cmsis_nn', from the pinned "
        f"sources: {pins}.")


def cache_root() -> Path:
    """Where compiled objects and firmware images are kept: ``$CHIPFIT_FIRMWARE_CACHE``, else
    ``$XDG_CACHE_HOME/chipfit/firmware`` (``~/.cache/chipfit/firmware``). Objects are keyed by core, flags,
    compiler and source tree, so sharing this folder between runs (and test sessions) is safe."""
    env = os.environ.get("CHIPFIT_FIRMWARE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chipfit" / "firmware"
