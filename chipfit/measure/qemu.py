"""The ``qemu`` runtime: a model's real TFLM + CMSIS-NN firmware on an emulated Cortex-M core, timed in
executed instructions (``chipfit measure MODEL.tflite --board qemu:cortex-m4``).

QEMU does not model pipelines, caches or flash wait states, so what it measures is the instruction count
(deterministic, per operator); turning it into time takes a board's cycles per instruction (calibrated on
published results, or measured with the ``serial`` runtime). What is measured exactly: the arena TFLM's
allocator takes on the 32-bit core, and the int8 outputs, checked bit for bit against the ``tflite-micro``
interpreter's (reference kernels on this machine) for the same input.

>>> rt = QemuRuntime("m33")
>>> rt.describe()  # doctest: +ELLIPSIS
'TFLM + CMSIS-NN firmware on QEMU mps2-an505 (cortex-m33, -icount shift=0: instructions)'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np

from chipfit.errors import MeasurementError, UsageError
from chipfit.firmware.build import Firmware, build_firmware
from chipfit.firmware.cores import Core, get_core
from chipfit.firmware.run import FirmwareRun, run_qemu
from chipfit.logging import get_logger
from chipfit.measure.base import Artifact, Runtime, _as_model
from chipfit.measure.modelfile import ModelFile
from chipfit.measure.record import Measurement

_log = get_logger(__name__)


@dataclass(frozen=True)
class FirmwareMeasurement(Measurement):
    """A :class:`Measurement` from a firmware: ``instructions`` (QEMU) or ``cycles`` (a real board) per
    inference and per operator, TFLM's arena on the 32-bit core, and the outputs. ``latency_ms`` is
    ``instructions`` (or ``cycles``) at ``clock_mhz`` and one cycle per instruction, as ``estimator`` says."""

    core: str = ""
    board: str = ""
    instructions: int | None = None
    cycles: int | None = None
    clock_mhz: float | None = None
    ops: tuple[tuple[str, int], ...] = ()
    arena_bytes: int | None = None
    outputs: tuple[tuple[int, ...], ...] = ()
    bit_exact: bool | None = None
    build_s: float | None = None
    run_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["ops"] = [list(o) for o in self.ops]
        d["outputs"] = [list(o) for o in self.outputs]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FirmwareMeasurement:
        base = asdict(Measurement.from_dict(d))
        known = {f.name for f in fields(cls)} - set(base)
        extra = {k: v for k, v in d.items() if k in known}
        extra["ops"] = tuple((str(a), int(b)) for a, b in d.get("ops") or ())
        extra["outputs"] = tuple(tuple(int(x) for x in o) for o in d.get("outputs") or ())
        return cls(**base, **extra)


def reference_outputs(model: ModelFile, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The ``tflite-micro`` interpreter's outputs for ``inputs`` (reference kernels, this machine)."""
    from chipfit.measure.tflm import interpreter

    it = interpreter(model)
    for i, x in enumerate(inputs.values()):
        d = it.get_input_details(i)
        it.set_input(np.asarray(x, dtype=d["dtype"]).reshape(tuple(d["shape"])), i)
    it.invoke()
    return [np.asarray(it.get_output(k)).reshape(-1) for k in range(_n_outputs(model))]


def _n_outputs(model: ModelFile) -> int:
    import tflite

    return int(tflite.Model.GetRootAsModel(model.data, 0).Subgraphs(0).OutputsLength())


def input_bytes(model: ModelFile, inputs: dict[str, np.ndarray]) -> bytes:
    """The inputs as the firmware reads them: each tensor's bytes, in the model's input order."""
    if len(inputs) != len(model.inputs):
        raise UsageError(f"'{model.name}' has {len(model.inputs)} inputs; given {len(inputs)}.")
    out = b""
    for info, x in zip(model.inputs, inputs.values(), strict=True):
        a = np.asarray(x)
        if a.dtype != np.dtype(info.dtype):
            raise UsageError(f"input '{info.name}' of '{model.name}' is {info.dtype}; given {a.dtype} (quantize "
                             f"it with the model's input scale and zero point first).")
        out += np.ascontiguousarray(a).tobytes()
    return out


def compare_outputs(got: Sequence[np.ndarray], want: Sequence[np.ndarray], where: str) -> None:
    """Raise :class:`MeasurementError` unless every output is identical, byte for byte."""
    if len(got) != len(want):
        raise MeasurementError(f"{where}: {len(got)} outputs, the tflite-micro interpreter gave {len(want)}.")
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        g8, w8 = np.asarray(g).reshape(-1), np.asarray(w).reshape(-1).astype(np.asarray(g).dtype)
        if g8.shape != w8.shape or not np.array_equal(g8, w8):
            diff = int(np.sum(g8 != w8)) if g8.shape == w8.shape else -1
            raise MeasurementError(
                f"{where}: output {k} differs from the tflite-micro interpreter's ({diff} of {w8.size} values; "
                f"first got {g8[:8].tolist()}, expected {w8[:8].tolist()}). CMSIS-NN and TFLM's reference "
                f"kernels are meant to be bit-exact: report it with the model attached.")


class QemuRuntime(Runtime):
    """TFLM + CMSIS-NN firmware on a Cortex-M core emulated by QEMU (``qemu:cortex-m4``; m3, m4, m7, m33,
    m55). :meth:`measure` builds (or reuses) the firmware, runs it once (instruction counts are
    deterministic), and checks its outputs against the ``tflite-micro`` interpreter's (``check=True``)."""

    name: ClassVar[str] = "qemu"
    kinds: ClassVar[tuple[str, ...]] = ("tflite",)

    def __init__(self, core: str | Core = "cortex-m4", threads: int = 1, *, check: bool = True,
                 clock_mhz: float | None = None, timeout_s: float = 300) -> None:
        super().__init__(threads)
        self.core = core if isinstance(core, Core) else get_core(str(core).removeprefix("qemu:"))
        self.check = check
        self.clock_mhz = float(clock_mhz or self.core.sysclk_hz / 1e6)
        self.timeout_s = timeout_s

    def describe(self) -> str:
        return (f"TFLM + CMSIS-NN firmware on QEMU {self.core.qemu_machine} ({self.core.name}, -icount shift=0: "
                f"instructions)")

    def device(self) -> str:
        return f"{self.core.board} (emulated {self.core.name} on Arm's {self.core.qemu_machine} board)"

    def check_kind(self, model: ModelFile) -> None:
        if model.kind != "tflite":
            raise MeasurementError(f"the qemu runtime runs .tflite files on a TFLM firmware ('{model.name}' is "
                                   f"{model.kind}); export a .tflite, or use the 'onnxruntime' runtime.")

    def open(self, model: ModelFile, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        fw = self.firmware(model)
        data = input_bytes(model, inputs)
        return lambda: run_qemu(fw.elf, self.core, data, timeout_s=self.timeout_s)

    def firmware(self, model: ModelFile) -> Firmware:
        self.check_kind(model)
        return build_firmware(model.data, self.core)

    def run(self, artifact: Artifact, inputs: dict[str, np.ndarray] | None = None,
            seed: int = 0) -> tuple[FirmwareRun, Firmware, dict[str, np.ndarray]]:
        """Build (or reuse) the firmware and run it once: ``(run, firmware, inputs used)``."""
        m = _as_model(artifact)
        fw = self.firmware(m)
        feed = inputs if inputs is not None else m.random_inputs(seed)
        return run_qemu(fw.elf, self.core, input_bytes(m, feed), timeout_s=self.timeout_s), fw, feed

    def measure_many(self, artifacts: Sequence[Artifact], inputs: Sequence[dict[str, np.ndarray]] | None = None,
                     *, rounds: int = 5, runs: int = 20, warmup: int = 5, estimator: str = "min",
                     memory: bool = False, seed: int = 0, energy: bool = False) -> list[FirmwareMeasurement]:
        """One deterministic run per model (``rounds``/``runs``/``warmup``/``estimator`` do not apply:
        instruction counts do not vary)."""
        if energy:
            raise UsageError("the qemu runtime counts instructions; it cannot meter energy (measure on a board "
                             "with --serial and a power meter, see `chipfit energy`).")
        feeds = list(inputs) if inputs is not None else [None] * len(artifacts)
        if len(feeds) != len(artifacts):
            raise UsageError(f"{len(artifacts)} models but {len(feeds)} input sets: give one per model or none.")
        return [self._measure_one(a, f, seed) for a, f in zip(artifacts, feeds, strict=True)]

    def _measure_one(self, artifact: Artifact, inputs: dict[str, np.ndarray] | None,
                     seed: int) -> FirmwareMeasurement:
        m = _as_model(artifact)
        run, fw, feed = self.run(m, inputs, seed)
        exact = None
        if self.check:
            compare_outputs(run.outputs, reference_outputs(m, feed), f"'{m.name}' on {self.core.board}")
            exact = True
        ms = run.instructions / (self.clock_mhz * 1e3)
        return FirmwareMeasurement(
            model=m.name, runtime=self.describe(), device=self.device(), latency_ms=ms,
            estimator=(f"{run.instructions:,} instructions (QEMU -icount, deterministic) at {self.clock_mhz:g} MHz "
                       f"and 1 cycle per instruction, not a board's latency"),
            p50_ms=ms, p90_ms=ms, p99_ms=ms, runs=1, peak_memory_bytes=run.arena_bytes,
            memory_method=(f"TFLM arena_used_bytes() on the 32-bit {self.core.name} (CMSIS-NN kernels), "
                           f"measured in the firmware"),
            input_shapes=tuple(tuple(int(s) for s in np.shape(x)) for x in feed.values()),
            core=self.core.name, board=self.core.board, instructions=run.instructions, cycles=None,
            clock_mhz=self.clock_mhz, ops=tuple(run.per_op()), arena_bytes=run.arena_bytes,
            outputs=tuple(tuple(int(v) for v in o.tolist()) for o in run.outputs), bit_exact=exact,
            build_s=fw.build_s, run_s=run.wall_s)
