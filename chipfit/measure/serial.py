"""The ``serial`` runtime: the model's firmware on a real board, driven over its serial port.

Flash the serial build (``chipfit firmware MODEL.tflite --core cortex-m4 --serial``, with the board's own
UART in ``chipfit_getc``/``chipfit_putc``), then ``chipfit measure MODEL.tflite --serial /dev/ttyACM0 --core
cortex-m4 --clock-mhz 120``. The protocol (:mod:`chipfit.firmware.templates`): ``PING`` is answered with the
arena, input size, operator count and model size (checked against the model given here); ``RUN <n>`` plus
``n`` raw input bytes is answered with one line per operator (DWT cycles and SysTick ticks), the whole
``Invoke()``, the arena and the outputs, which are checked bit for bit against the ``tflite-micro``
interpreter's. Cycles are the DWT cycle counter's where the core has one, else SysTick ticks (clocked from
the core: cycles too). The same protocol is tested against QEMU through a pseudo-terminal.

>>> SerialRuntime("/dev/ttyACM0", core="m4", clock_mhz=120).describe()
'TFLM + CMSIS-NN firmware on a cortex-m4 board at /dev/ttyACM0 (120 MHz, serial protocol)'
"""

from __future__ import annotations

import os
import re
import select
import termios
import time
import tty
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from chipfit.errors import MeasurementError, UsageError
from chipfit.firmware.cores import Core, get_core
from chipfit.firmware.run import FirmwareRun, parse_output
from chipfit.logging import get_logger
from chipfit.measure.base import Artifact, Runtime, _as_model
from chipfit.measure.modelfile import ModelFile
from chipfit.measure.qemu import FirmwareMeasurement, compare_outputs, input_bytes, reference_outputs

_log = get_logger(__name__)
BAUDS = {9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400, 57600: termios.B57600,
         115200: termios.B115200, 230400: termios.B230400, 460800: termios.B460800, 921600: termios.B921600}


class SerialLink:
    """A raw serial line (a tty device or pseudo-terminal) that reads lines with deadlines."""

    def __init__(self, port: str, baud: int = 115200) -> None:
        if baud not in BAUDS:
            raise UsageError(f"baud {baud} is not supported: expected one of {', '.join(map(str, BAUDS))}.")
        try:
            self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            raise MeasurementError(f"cannot open serial port '{port}' ({e.strerror}); expected the board's port, "
                                   f"e.g. /dev/ttyACM0 (check the cable, and that you are in the 'dialout' "
                                   f"group).") from None
        self.port, self.buf = port, b""
        tty.setraw(self.fd)
        attrs = termios.tcgetattr(self.fd)
        attrs[4] = attrs[5] = BAUDS[baud]
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> SerialLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view[:4096])
            view = view[n:]

    def readline(self, deadline: float) -> str:
        """One line (without the newline); raises :class:`MeasurementError` past ``deadline``."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MeasurementError(f"no answer from the board on '{self.port}' in time (got "
                                       f"{self.buf[-200:]!r}); is the serial build of chipfit's firmware flashed "
                                       f"and the baud rate right?")
            r, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if r:
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    raise MeasurementError(f"serial port '{self.port}' closed while waiting for the board.")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").rstrip("\r")

    def until(self, prefix: str, deadline: float) -> str:
        """Read lines until one starts with ``prefix``; return it."""
        while True:
            line = self.readline(deadline)
            if line.startswith(prefix):
                return line

    def drain(self) -> None:
        while select.select([self.fd], [], [], 0.05)[0]:
            if not os.read(self.fd, 4096):
                break
        self.buf = b""


def ping(link: SerialLink, timeout_s: float = 10) -> dict[str, int]:
    """Ask the board what it runs: ``{"arena", "input_bytes", "ops", "model_bytes"}``."""
    link.drain()
    deadline = time.monotonic() + timeout_s
    for _ in range(3):  # a board that just booted may swallow the first line
        link.write(b"PING\n")
        try:
            line = link.until("CHIPFIT pong", min(deadline, time.monotonic() + timeout_s / 3))
            return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", line.removeprefix("CHIPFIT pong"))}
        except MeasurementError:
            continue
    raise MeasurementError(f"the board on '{link.port}' did not answer PING within {timeout_s:.0f} s (expected "
                           f"'CHIPFIT pong ...'); flash the serial build: chipfit firmware MODEL --core CORE "
                           f"--serial.")


def run_serial(link: SerialLink, data: bytes, core: Core, *, timeout_s: float = 120,
               per_tick: float | None = None) -> FirmwareRun:
    """Send one input, run it, and parse the board's answer (``per_tick``: instructions or cycles per
    SysTick tick; 1 on a real core, whose SysTick counts core cycles)."""
    link.write(f"RUN {len(data)}\n".encode() + data)
    deadline = time.monotonic() + timeout_s
    lines = []
    while True:
        line = link.readline(deadline)
        if line.startswith("CHIPFIT"):
            lines.append(line)
        if line.startswith("CHIPFIT end"):
            break
    return parse_output("\n".join(lines) + "\n", core, per_tick=per_tick if per_tick is not None else 1.0)


class SerialRuntime(Runtime):
    """A real board over a serial port, running the serial build of chipfit's firmware for the model."""

    name: ClassVar[str] = "serial"
    kinds: ClassVar[tuple[str, ...]] = ("tflite",)

    def __init__(self, port: str, core: str | Core = "cortex-m4", clock_mhz: float = 0.0, threads: int = 1, *,
                 baud: int = 115200, check: bool = True, timeout_s: float = 120,
                 per_tick: float | None = None) -> None:
        super().__init__(threads)
        self.port, self.baud, self.check, self.timeout_s = port, baud, check, timeout_s
        self.core = core if isinstance(core, Core) else get_core(core)
        if clock_mhz <= 0:
            raise UsageError(f"--clock-mhz is needed with --serial (the core clock of the board at {port}, e.g. "
                             f"120 for an STM32L4R5); given {clock_mhz}.")
        self.clock_mhz = float(clock_mhz)
        self.per_tick = per_tick

    def describe(self) -> str:
        return (f"TFLM + CMSIS-NN firmware on a {self.core.name} board at {self.port} ({self.clock_mhz:g} MHz, "
                f"serial protocol)")

    def device(self) -> str:
        return f"{self.core.name} board on {self.port} at {self.clock_mhz:g} MHz"

    def open(self, model: ModelFile, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        data = input_bytes(model, inputs)

        def once() -> FirmwareRun:
            with SerialLink(self.port, self.baud) as link:
                return run_serial(link, data, self.core, timeout_s=self.timeout_s, per_tick=self.per_tick)

        return once

    def measure_many(self, artifacts: Sequence[Artifact], inputs: Sequence[dict[str, np.ndarray]] | None = None,
                     *, rounds: int = 5, runs: int = 20, warmup: int = 5, estimator: str = "min",
                     memory: bool = False, seed: int = 0, energy: bool = False) -> list[FirmwareMeasurement]:
        """``rounds`` runs per model (default 5, warmup 1 at most); the estimate is the minimum, and each
        op's figure is taken from that run."""
        if energy:
            raise UsageError("the serial runtime does not meter energy; record windows with --windows-out on the "
                             "host driving a power meter, see `chipfit energy`.")
        feeds = list(inputs) if inputs is not None else [None] * len(artifacts)
        out = []
        with SerialLink(self.port, self.baud) as link:
            for a, f in zip(artifacts, feeds, strict=True):
                out.append(self._one(link, _as_model(a), f, seed, max(1, rounds), min(warmup, 1)))
        return out

    def _one(self, link: SerialLink, m: ModelFile, inputs: dict[str, np.ndarray] | None, seed: int, n: int,
             warmup: int) -> FirmwareMeasurement:
        self.check_kind(m)
        info = ping(link)
        feed = inputs if inputs is not None else m.random_inputs(seed)
        data = input_bytes(m, feed)
        if info.get("model_bytes") not in (None, len(m.data)) or info.get("input_bytes") != len(data):
            raise MeasurementError(
                f"the board on {self.port} runs another model ({info.get('model_bytes')} bytes, "
                f"{info.get('input_bytes')} input bytes); '{m.name}' is {len(m.data)} bytes with {len(data)} input "
                f"bytes. Flash its firmware: chipfit firmware {m.name} --core {self.core.name} --serial.")
        for _ in range(warmup):
            run_serial(link, data, self.core, timeout_s=self.timeout_s, per_tick=self.per_tick)
        runs = [run_serial(link, data, self.core, timeout_s=self.timeout_s, per_tick=self.per_tick)
                for _ in range(n)]
        best = min(runs, key=lambda r: r.cycles or r.instructions)
        exact = None
        if self.check:
            compare_outputs(best.outputs, reference_outputs(m, feed), f"'{m.name}' on {self.device()}")
            exact = True
        use_dwt = best.cycles > 0
        cycles = best.cycles if use_dwt else best.instructions
        per_op = tuple((o.op, o.cycles if use_dwt else o.instructions) for o in best.ops)
        ms_all = np.array([(r.cycles if use_dwt else r.instructions) for r in runs], dtype=float) / (
            self.clock_mhz * 1e3)
        p50, p90, p99 = (float(x) for x in np.percentile(ms_all, [50, 90, 99]))
        how = "DWT cycle counter" if use_dwt else "SysTick ticks (no DWT cycle counter on this core)"
        return FirmwareMeasurement(
            model=m.name, runtime=self.describe(), device=self.device(), latency_ms=float(ms_all.min()),
            estimator=f"min of {n} runs, {cycles:,} cycles from the {how} at {self.clock_mhz:g} MHz",
            p50_ms=p50, p90_ms=p90, p99_ms=p99, runs=n, peak_memory_bytes=best.arena_bytes,
            memory_method=f"TFLM arena_used_bytes() on the board's {self.core.name} (CMSIS-NN kernels)",
            input_shapes=tuple(tuple(int(s) for s in np.shape(x)) for x in feed.values()),
            core=self.core.name, board=f"serial:{self.port}", instructions=None, cycles=cycles,
            clock_mhz=self.clock_mhz, ops=per_op, arena_bytes=best.arena_bytes,
            outputs=tuple(tuple(int(v) for v in o.tolist()) for o in best.outputs), bit_exact=exact,
            run_s=sum(r.wall_s for r in runs))
