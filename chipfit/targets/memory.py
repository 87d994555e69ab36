"""The memory system of a microcontroller board, and what it costs per cycle.

A board profile may state, each figure with its source (``memory:`` in the target file):

- ``flash_wait_states``: wait states of an internal-flash read at the profile's clock, and optionally
  ``flash_mhz_per_wait_state`` (the vendor's flash-latency table: one more wait state per that many MHz), so that
  the same part at another clock gets its own count;
- ``flash_cache``: whether flash reads go through an accelerator or cache (ST's ART accelerator, a Cortex-M7
  I-cache, an XIP cache) that hides those wait states from a loop running out of flash;
- ``icache_kb`` / ``dcache_kb``, ``itcm_kb`` / ``dtcm_kb``: caches and tightly coupled memories;
- ``weights_in`` / ``arena_in``: where the deployed weights and the tensor arena live.

What the published rows show (``fitted.yaml`` ``clock_invariance``): on the STM32H7A3 (I/D caches) and the
STM32L4R5 (ART accelerator) the same workload takes the same cycles at 40 and 280 MHz, and at 70 and 120 MHz,
although the flash needs 0 and 6 (resp. 3 and 5) wait states there: behind a cache, wait states cost nothing
measurable, and every board chipfit's fit rests on has one. Only a board whose flash is *not* cached pays them;
:func:`memory_factor` prices that with an estimate (no published board without a flash cache was available to
fit it on), so a prediction for such a board says so.

>>> m = MemorySystem(flash_wait_states=5, flash_cache=False)
>>> round(memory_factor(m, 120.0)[0], 2)
2.25
>>> memory_factor(MemorySystem(flash_wait_states=5, flash_cache=True), 120.0)[0]
1.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

WEIGHT_PLACES = ("internal-flash", "external-flash", "mram", "sram")
ARENA_PLACES = ("sram", "dtcm", "tcm", "external-sdram", "psram")

# est.: cycles stalled per executed cycle, per flash wait state, when flash reads are not cached. An int8 MAC
# inner loop (CMSIS-NN style, ~0.5 MAC/cycle sustained on a Cortex-M4: 8 cycles per 4 MACs) reads one 32-bit
# weight word and ~1 flash line (128 bits, ~5 Thumb-2 instructions) of loop code per 8 cycles: ~2 uncached
# flash accesses per 8 cycles, each stalled by the wait-state count. Not fitted (no published board lacks a cache).
STALL_PER_WAIT_STATE = 0.25
STALL_SOURCE = ("est.: ~2 uncached flash reads (one weight word, one 128-bit line of loop code) per 8 cycles of an "
                "int8 MAC loop, each stalled by the wait states; not fitted: every published board has a flash cache")


@dataclass(frozen=True)
class MemorySystem:
    """A board's memory facts (None: not stated). Their sources are in the Target's ``sources`` under
    ``memory.<field>``."""

    flash_wait_states: int | None = None  # at the profile's clock
    flash_mhz_per_wait_state: float | None = None
    flash_cache: bool | None = None
    icache_kb: float | None = None
    dcache_kb: float | None = None
    itcm_kb: float | None = None
    dtcm_kb: float | None = None
    weights_in: str | None = None
    arena_in: str | None = None
    clock_mhz: float | None = None  # the clock flash_wait_states is stated at

    def wait_states(self, clock_mhz: float) -> int | None:
        """Flash wait states at ``clock_mhz``: from the latency table's MHz per wait state where stated, else the
        stated count scaled with the clock (one access time in cycles grows linearly with the clock)."""
        if self.flash_mhz_per_wait_state:
            return max(0, math.ceil(clock_mhz / self.flash_mhz_per_wait_state - 1e-9) - 1)
        if self.flash_wait_states is None:
            return None
        if not self.clock_mhz or abs(clock_mhz - self.clock_mhz) < 1e-9:
            return self.flash_wait_states
        return max(0, math.ceil((self.flash_wait_states + 1) * clock_mhz / self.clock_mhz - 1e-9) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def memory_factor(memory: MemorySystem | None, clock_mhz: float) -> tuple[float, str]:
    """Cycles on this memory system over cycles on a board whose flash wait states are hidden (all the boards
    the published fit rests on), and why. 1.0 when the flash is cached, when weights are not in flash, or when
    the profile states nothing about its memory."""
    if memory is None:
        return 1.0, "memory system not stated: flash wait states assumed hidden, as on the published boards"
    ws = memory.wait_states(clock_mhz)
    if memory.weights_in == "sram":
        return 1.0, "weights in SRAM: no flash wait states on the weights"
    if memory.flash_cache:
        what = f"{ws} flash wait states at {clock_mhz:g} MHz" if ws is not None else "flash wait states"
        return 1.0, (f"{what} hidden by the flash cache/accelerator (published rows: the same cycles at two "
                     "clocks on the cached STM32H7A3 and STM32L4R5)")
    if not ws:
        return 1.0, f"{'no' if ws == 0 else 'unknown'} flash wait states at {clock_mhz:g} MHz"
    f = 1.0 + STALL_PER_WAIT_STATE * ws
    return f, (f"{ws} uncached flash wait states at {clock_mhz:g} MHz: x{f:.3g} cycles ({STALL_SOURCE})")
