"""Where the Arm GNU toolchain and QEMU are, and why not when they are absent; where firmware is cached.

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


def cache_root() -> Path:
    """Where compiled objects and firmware images are kept: ``$CHIPFIT_FIRMWARE_CACHE``, else
    ``$XDG_CACHE_HOME/chipfit/firmware`` (``~/.cache/chipfit/firmware``). Objects are keyed by core, flags,
    compiler and source tree, so sharing this folder between runs (and test sessions) is safe."""
    env = os.environ.get("CHIPFIT_FIRMWARE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chipfit" / "firmware"
