"""Run a built firmware under QEMU with instruction counting and read what its harness printed.

``qemu-system-arm -M <board> -cpu <core> -nographic -semihosting -icount shift=0 -kernel firmware.elf``: the
input is read by the firmware from ``input.bin`` in QEMU's working directory (semihosting), the output lines
come back on stdout (format in :mod:`chipfit.firmware.templates`).

>>> r = parse_output(SAMPLE, get_core("cortex-m4"))
>>> r.instructions, [o.op for o in r.ops], r.arena_bytes, r.outputs[0].tolist()
(7698960, ['CONV_2D', 'SOFTMAX'], 22820, [-1, -128])
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.firmware.cores import Core, get_core
from chipfit.firmware.toolchain import FirmwareError, require
from chipfit.logging import get_logger

_log = get_logger(__name__)
TFLITE_TYPES = {1: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16, 9: np.int8}
SAMPLE = """CHIPFIT calibrate instructions 200000 ticks 5001
CHIPFIT ready arena 22820 input_bytes 490 ops 2
CHIPFIT op 0 CONV_2D ticks 192411 cycles 0
CHIPFIT op 1 SOFTMAX ticks 63 cycles 0
CHIPFIT invoke ticks 192474 cycles 0
CHIPFIT arena 22820
CHIPFIT output 0 type 9 bytes 2 ff80
CHIPFIT end
"""


@dataclass(frozen=True)
class OpCount:
    """One operator's count: executed instructions (QEMU) and DWT cycles (a real core; 0 under QEMU)."""

    index: int
    op: str
    instructions: int
    cycles: int
    ticks: int


@dataclass(frozen=True)
class FirmwareRun:
    """What one run of the harness reported. ``instructions``: the whole ``Invoke()``; ``arena_bytes``:
    TFLM's ``arena_used_bytes()`` on the 32-bit core; ``outputs``: the output tensors, as the core left them."""

    core: str
    ops: tuple[OpCount, ...]
    instructions: int
    cycles: int
    ticks: int
    arena_bytes: int
    outputs: tuple[np.ndarray, ...]
    instructions_per_tick: float
    wall_s: float = 0.0

    def per_op(self) -> list[tuple[str, int]]:
        return [(o.op, o.instructions) for o in self.ops]

    def to_dict(self) -> dict[str, Any]:
        return {"core": self.core, "instructions": self.instructions, "cycles": self.cycles,
                "arena_bytes": self.arena_bytes, "instructions_per_tick": self.instructions_per_tick,
                "ops": [o.__dict__ for o in self.ops], "outputs": [o.tolist() for o in self.outputs],
                "wall_s": self.wall_s}


def parse_output(text: str, core: Core, *, per_tick: float | None = None, wall_s: float = 0.0) -> FirmwareRun:
    """Read the harness's lines. ``per_tick``: instructions per SysTick tick (default: the board's, checked
    against the harness's calibration loop; a real board's cycles come from DWT instead)."""
    err = re.findall(r"^CHIPFIT error (.*)$", text, re.M)
    if err:
        logs = re.findall(r"^CHIPFIT log (.*)$", text, re.M)
        raise FirmwareError(f"the firmware on {core.name} reported: {err[0]}" +
                            (f" (TFLM said: {'; '.join(logs[-3:])})" if logs else "") +
                            (". A fault usually means the image does not fit the board's memory map or the "
                             "stack overflowed." if "fault" in err[0] else ""))
    if not re.search(r"^CHIPFIT end\s*$", text, re.M):
        raise FirmwareError(f"the firmware on {core.name} stopped before its 'CHIPFIT end' line (expected the "
                            f"per-op counts, the arena and the outputs); it printed: {text[-600:]!r}")
    factor = per_tick or core.instructions_per_tick
    cal = re.search(r"^CHIPFIT calibrate instructions (\d+) ticks (\d+)", text, re.M)
    if per_tick is None and cal and int(cal.group(2)) > 0:
        seen = int(cal.group(1)) / int(cal.group(2))
        if abs(seen / factor - 1) > 0.01:
            _log.warning("%s: the calibration loop ran %.2f instructions per SysTick tick, expected %.2f (board "
                         "clock %d Hz); using the loop's figure", core.name, seen, factor, core.sysclk_hz)
            factor = seen
    ops = tuple(OpCount(int(i), name, round(int(t) * factor), int(c), int(t)) for i, name, t, c in
                re.findall(r"^CHIPFIT op (\d+) (\S+) ticks (\d+) cycles (\d+)", text, re.M))
    inv = re.search(r"^CHIPFIT invoke ticks (\d+) cycles (\d+)", text, re.M)
    arena = re.search(r"^CHIPFIT arena (\d+)", text, re.M)
    if not inv or not arena:
        raise FirmwareError(f"the firmware on {core.name} printed no 'invoke' or 'arena' line: {text[-400:]!r}")
    outs = []
    for _i, typ, n, hexs in re.findall(r"^CHIPFIT output (\d+) type (\d+) bytes (\d+) ([0-9a-f]*)", text, re.M):
        raw = bytes.fromhex(hexs)
        if len(raw) != int(n):
            raise FirmwareError(f"output of {n} bytes came back as {len(raw)} bytes from {core.name}.")
        outs.append(np.frombuffer(raw, dtype=TFLITE_TYPES.get(int(typ), np.uint8)).copy())
    ticks = int(inv.group(1))
    return FirmwareRun(core.name, ops, round(ticks * factor), int(inv.group(2)), ticks, int(arena.group(1)),
                       tuple(outs), factor, wall_s)


def qemu_command(elf: Path, core: Core, *, serial: str = "null") -> list[str]:
    """The QEMU command line that runs ``elf`` on ``core``'s board, one instruction per ns of virtual time."""
    return ["qemu-system-arm", "-M", core.qemu_machine, "-cpu", core.qemu_cpu, "-nographic", "-monitor", "none",
            "-serial", serial, "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
            "-kernel", str(elf)]


def run_qemu(elf: str | Path, core: str | Core, input_bytes: bytes = b"", *, timeout_s: float = 300) -> FirmwareRun:
    """Run a semihosting firmware once under QEMU with ``input_bytes`` as its input, and parse its report."""
    require(qemu=True)
    c = core if isinstance(core, Core) else get_core(core)
    with tempfile.TemporaryDirectory(prefix="chipfit-qemu-") as tmp:
        (Path(tmp) / "input.bin").write_bytes(input_bytes)
        t0 = time.perf_counter()
        try:
            r = subprocess.run(qemu_command(Path(elf).resolve(), c), cwd=tmp, capture_output=True, text=True,
                               timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise FirmwareError(f"QEMU ({c.qemu_machine}) ran {elf} for over {timeout_s:.0f} s without finishing; "
                                f"a hung firmware (fault loop) or a very large model: raise timeout_s.") from None
        wall = time.perf_counter() - t0
    if r.returncode != 0 and "CHIPFIT end" not in r.stdout:
        raise FirmwareError(f"QEMU ({c.qemu_machine}) exited with {r.returncode} running {elf}: "
                            f"{(r.stderr or r.stdout)[-600:]!r}")
    return parse_output(r.stdout, c, wall_s=wall)


class QemuSerialBoard:
    """A serial-protocol firmware running under QEMU with its UART on a pseudo-terminal: a stand-in for a real
    board on ``/dev/ttyACM0`` (``with QemuSerialBoard(elf, core) as port: ...``). The emulator is stopped on
    exit."""

    def __init__(self, elf: str | Path, core: str | Core, *, start_timeout_s: float = 30) -> None:
        self.elf, self.core = Path(elf).resolve(), core if isinstance(core, Core) else get_core(core)
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.port = ""

    def __enter__(self) -> str:
        require(qemu=True)
        cmd = qemu_command(self.elf, self.core, serial="pty")
        cmd[cmd.index("-nographic")] = "-display"
        cmd.insert(cmd.index("-display") + 1, "none")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + self.start_timeout_s
        seen = ""
        import select

        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                seen += line
                m = re.search(r"(/dev/pts/\d+)", line)
                if m:
                    self.port = m.group(1)
                    return self.port
            if self.proc.poll() is not None:
                break
        self.__exit__(None, None, None)
        raise FirmwareError(f"QEMU ({self.core.qemu_machine}) gave no pseudo-terminal within "
                            f"{self.start_timeout_s:.0f} s (expected 'char device redirected to /dev/pts/N'); it "
                            f"printed {seen[-400:]!r}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
