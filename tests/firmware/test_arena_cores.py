"""The arena is core-aware: TFLM + CMSIS-NN built for a Helium core (Cortex-M55, ARM_MATH_MVEI) and for a core
with neither DSP nor MVE (Cortex-M3) asks for other scratch buffers than on the DSP cores (M4/M33, checked in
test_qemu_runtime.py); chipfit's prediction for the core's code path equals TFLM's ``arena_used_bytes()`` on the
emulated core byte for byte (no tolerance: the scratch sizes are read from CMSIS-NN's sources, the structs from
the pinned headers)."""

from __future__ import annotations

import pytest
from farm_helpers import MLPERF

from chipfit.cost.arena import cmsis_isa, tflm_arena

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("core", ["cortex-m55", "cortex-m3"])
@pytest.mark.parametrize("name", sorted(MLPERF))
def test_arena_follows_the_cores_code_path(qemu_mlperf, core: str, name: str) -> None:
    r = qemu_mlperf(core, name)
    m = r["m"]
    assert m.bit_exact is True
    predicted = tflm_arena(r["path"], abi="arm32", kernels="cmsis-nn", isa=cmsis_isa(core))
    assert m.arena_bytes == predicted.total, (core, name, predicted.to_dict())
