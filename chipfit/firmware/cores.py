"""The emulated Cortex-M cores: compiler flags, the QEMU machine (Arm's MPS2/MPS3 reference boards) and its
memory map, and how SysTick ticks convert to executed instructions under ``-icount shift=0``.

With ``-icount shift=0`` QEMU advances virtual time by 1 ns per executed instruction, and SysTick (clocked
from the core, ``SYST_CSR = 5``) counts at the board's system clock; one tick is therefore
``1e9 / sysclk_hz`` instructions: 40 on MPS2 (25 MHz), 50 on AN505 (20 MHz), 31.25 on AN547 (32 MHz). The
harness also times a loop of known length on every run, so a wrong clock here is caught (see
:func:`chipfit.firmware.run.parse_output`).

>>> get_core("m4").qemu_machine
'mps2-an386'
>>> get_core("cortex-m33").instructions_per_tick
50.0
"""

from __future__ import annotations

from dataclasses import dataclass

from chipfit.errors import UsageError
from chipfit.naming import did_you_mean


@dataclass(frozen=True)
class Core:
    """One Cortex-M core and the QEMU board that emulates it. ``flash``/``ram``: (origin, length) of the
    code and data regions the firmware links to; ``model_region``: where the model's weights go when the code
    region is too small for them (None: with the code)."""

    name: str
    cflags: tuple[str, ...]
    qemu_machine: str
    qemu_cpu: str
    flash: tuple[int, int]
    ram: tuple[int, int]
    sysclk_hz: int
    uart_base: int
    model_region: tuple[int, int] | None = None
    dsp: bool = True

    @property
    def instructions_per_tick(self) -> float:
        """Executed instructions per SysTick tick under ``-icount shift=0`` (1 instruction per ns)."""
        return 1e9 / self.sysclk_hz

    @property
    def board(self) -> str:
        return f"qemu:{self.name}"


_MPS2_FLASH, _MPS2_RAM = (0x0000_0000, 0x40_0000), (0x2000_0000, 0x40_0000)
CORES: dict[str, Core] = {c.name: c for c in (
    Core("cortex-m3", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"), "mps2-an385", "cortex-m3",
         _MPS2_FLASH, _MPS2_RAM, 25_000_000, 0x4000_4000, dsp=False),
    Core("cortex-m4", ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"), "mps2-an386",
         "cortex-m4", _MPS2_FLASH, _MPS2_RAM, 25_000_000, 0x4000_4000),
    Core("cortex-m7", ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard"), "mps2-an500",
         "cortex-m7", _MPS2_FLASH, _MPS2_RAM, 25_000_000, 0x4000_4000),
    # AN505 boots secure: code in the secure alias of SSRAM1, data in the secure alias of SSRAM2
    Core("cortex-m33", ("-mcpu=cortex-m33", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"), "mps2-an505",
         "cortex-m33", (0x1000_0000, 0x40_0000), (0x3800_0000, 0x20_0000), 20_000_000, 0x5020_0000),
    # AN547: code in the 512 KB ITCM, data in SRAM, the model's weights in DDR when they do not fit the ITCM
    Core("cortex-m55", ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"), "mps3-an547", "cortex-m55",
         (0x0000_0000, 0x8_0000), (0x2100_0000, 0x40_0000), 32_000_000, 0x5930_3000,
         model_region=(0x7000_0000, 0x100_0000)),
)}
ALIASES = {c.removeprefix("cortex-"): c for c in CORES}


def get_core(name: str) -> Core:
    """The core named ``cortex-m4`` (or ``m4``).

    >>> get_core("cortex-m0")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    chipfit.errors.UsageError: unknown core 'cortex-m0' ...
    """
    key = ALIASES.get(name.lower().strip(), name.lower().strip())
    if key not in CORES:
        raise UsageError(f"unknown core '{name}': expected one of {', '.join(CORES)} (the Cortex-M cores QEMU "
                         f"emulates on Arm's MPS2/MPS3 boards)." + did_you_mean(name, list(CORES)))
    return CORES[key]
