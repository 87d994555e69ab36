"""Is the machine busy? A fixed reference workload timed beside the models, and the OS's steal time.

A shared machine runs the same model 1.5-2x slower from one minute to the next (other VMs, other jobs). A
measurement taken then is not comparable with one taken later, and a calibration taken then would be wrong for
the rest of its life. So every local measurement also times :func:`reference_model` (a small, fixed int8
convolution network built here, never changed without changing :data:`REFERENCE_ID`), interleaved with the
models, and reads ``/proc/stat`` around it:

* ``reference_ms``: the reference's time in this measurement (the same estimator as the models');
* ``reference_baseline_ms``: the fastest this machine has ever run it (kept in chipfit's cache, per device,
  ONNX Runtime version and reference), i.e. the quiet machine;
* ``steal_pct``: the share of CPU time the hypervisor gave to other guests during the measurement, where the
  OS reports it; ``others_cpu_pct``: the share of all cores other processes of this machine used meanwhile;
* ``busy``: the reference ran more than :data:`BUSY_SLOWDOWN` slower than the baseline, or steal exceeded
  :data:`BUSY_STEAL_PCT` (or, when :data:`BUSY_JITTER` is set, the reference's median rose that far above its
  minimum).

A measurement can then be rescaled to the quiet machine (``latency_ms x baseline / reference``, see
:meth:`MachineState.scale_to_baseline`), ``chipfit calibrate`` refuses to calibrate a busy machine (unless
told otherwise) or waits for it to calm down (:func:`wait_until_quiet`), and a calibration keeps the
reference timing it was taken with, checked whenever it is used.

>>> st = MachineState(reference_ms=0.24, reference_p50_ms=0.25, reference_baseline_ms=0.2, steal_pct=0.0,
...                   others_cpu_pct=10.0)
>>> judge(st).busy, judge(st).busy_reason
(True, 'reference workload 20% slower than its baseline (240 us vs 200 us; threshold 15%)')
>>> MachineState.from_dict(judge(st).to_dict()) == judge(st)
True
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

REFERENCE_ID = "ref-int8conv-v1"
BUSY_SLOWDOWN = 0.15  # reference more than 15 % slower than the quiet baseline
BUSY_STEAL_PCT = 5.0  # more than 5 % of CPU time stolen by the hypervisor
# off by default: the minimum over interleaved rounds stays repeatable under contention that spreads the median
BUSY_JITTER = 0.0


@dataclass(frozen=True)
class MachineState:
    """How fast the machine was during one measurement, and whether that makes it busy."""

    reference_ms: float | None = None
    reference_p50_ms: float | None = None
    reference_baseline_ms: float | None = None
    steal_pct: float | None = None
    others_cpu_pct: float | None = None
    busy: bool | None = None
    busy_reason: str = ""
    reference_id: str = REFERENCE_ID

    @property
    def slowdown(self) -> float | None:
        """Reference time over its baseline (1.0: as fast as the quiet machine), or None."""
        if self.reference_ms is None or not self.reference_baseline_ms:
            return None
        return self.reference_ms / self.reference_baseline_ms

    def scale_to_baseline(self, latency_ms: float) -> float:
        """``latency_ms`` as the quiet machine would have measured it (unchanged without a baseline)."""
        s = self.slowdown
        return latency_ms / s if s else latency_ms

    def describe(self) -> str:
        if self.reference_ms is None:
            return "machine speed not checked (no reference workload timed)"
        base = (f", baseline {self.reference_baseline_ms * 1e3:.0f} us" if self.reference_baseline_ms else
                ", no baseline yet")
        steal = f", steal {self.steal_pct:.1f}%" if self.steal_pct is not None else ", steal not reported"
        verdict = f"BUSY: {self.busy_reason}" if self.busy else "quiet"
        return f"reference {self.reference_ms * 1e3:.0f} us{base}{steal}; {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MachineState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def judge(state: MachineState, *, slowdown: float = BUSY_SLOWDOWN, steal_pct: float = BUSY_STEAL_PCT,
          jitter: float = BUSY_JITTER) -> MachineState:
    """``state`` with ``busy`` and ``busy_reason`` set from its readings and the thresholds."""
    reasons = []
    s = state.slowdown
    if s is not None and s > 1 + slowdown:
        reasons.append(f"reference workload {s - 1:.0%} slower than its baseline ({state.reference_ms * 1e3:.0f} us "
                       f"vs {state.reference_baseline_ms * 1e3:.0f} us; threshold {slowdown:.0%})")
    if state.steal_pct is not None and state.steal_pct > steal_pct:
        reasons.append(f"{state.steal_pct:.1f}% of CPU time stolen by the hypervisor (threshold {steal_pct:g}%)")
    if jitter and state.reference_ms and state.reference_p50_ms and \
            state.reference_p50_ms > state.reference_ms * (1 + jitter):
        reasons.append(f"reference median {state.reference_p50_ms / state.reference_ms - 1:.0%} above its minimum "
                       f"(threshold {jitter:.0%}): contention during the measurement")
    known = state.reference_ms is not None or state.steal_pct is not None
    return dataclasses.replace(state, busy=bool(reasons) if known else None, busy_reason="; ".join(reasons))


def reference_model() -> bytes:
    """The reference workload: a fixed QOperator int8 network (uint8 8x32x32 input; 3x3 conv to 32 channels,
    3x3 depthwise, 1x1 conv, global average pool; about 3.7 M MACs), the same bytes on every machine."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(12345)
    inits = []
    nodes = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    s, z = const("s", np.array(0.05, np.float32)), const("z", np.array(128, np.uint8))
    nodes.append(helper.make_node("QuantizeLinear", ["x", s, z], ["q0"]))
    prev, cin = "q0", 8
    for i, (cout, k, group) in enumerate(((32, 3, 1), (32, 3, 32), (32, 1, 1))):
        w = const(f"w{i}", rng.integers(-64, 64, (cout, cin // group, k, k)).astype(np.int8))
        ws = const(f"ws{i}", np.full(cout, 0.01, np.float32))
        wz = const(f"wz{i}", np.zeros(cout, np.int8))
        b = const(f"b{i}", rng.integers(-100, 100, cout).astype(np.int32))
        nodes.append(helper.make_node("QLinearConv", [prev, s, z, w, ws, wz, s, z, b], [f"q{i + 1}"], group=group,
                                      pads=[k // 2] * 4, kernel_shape=[k, k]))
        prev, cin = f"q{i + 1}", cout
    nodes.append(helper.make_node("DequantizeLinear", [prev, s, z], ["f"]))
    nodes.append(helper.make_node("GlobalAveragePool", ["f"], ["y"]))
    g = helper.make_graph(nodes, "chipfit-reference", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                     [1, 8, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 1, 1])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)],
                             producer_name="chipfit-reference").SerializeToString()


@functools.cache
def _reference_bytes() -> bytes:
    return reference_model()


def reference_fn(threads: int = 1) -> Callable[[], Any]:
    """A zero-argument callable that runs the reference workload once (ONNX Runtime, ``threads`` threads)."""
    import functools as _ft

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    sess = ort.InferenceSession(_reference_bytes(), so, providers=["CPUExecutionProvider"])
    feed = {"x": np.random.default_rng(0).standard_normal((1, 8, 32, 32)).astype(np.float32)}
    sess.run(None, feed)
    return _ft.partial(sess.run, None, feed)


def baseline_key(threads: int = 1) -> str:
    """Which machine, runtime and reference a baseline belongs to."""
    from importlib.metadata import version

    from chipfit.cost.calibration import reference_key
    from chipfit.targets.machine import host_device

    return reference_key(f"host: {host_device()}", f"onnxruntime {version('onnxruntime')} ({threads} thread"
                         f"{'s' * (threads != 1)})", REFERENCE_ID)


def baseline_ms(threads: int = 1) -> float | None:
    """The fastest time this machine has run the reference (None before the first measurement)."""
    from chipfit.cost.calibration import read_reference_baseline

    rec = read_reference_baseline(baseline_key(threads))
    return float(rec["min_ms"]) if rec else None


@dataclass(frozen=True)
class CpuTimes:
    """A reading of ``/proc/stat`` (all CPUs, in clock ticks) and of this process's own CPU time."""

    total: int
    idle: int
    steal: int
    own_s: float
    wall_s: float

    @classmethod
    def now(cls, stat: str | Path = "/proc/stat") -> CpuTimes | None:
        """None where the OS has no ``/proc/stat``."""
        try:
            line = Path(stat).read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        if not line or line[0] != "cpu":
            return None
        v = [int(x) for x in line[1:]]
        v += [0] * (8 - len(v))
        # user nice system idle iowait irq softirq steal [guest guest_nice: already inside user/nice]
        return cls(total=sum(v[:8]), idle=v[3] + v[4], steal=v[7], own_s=time.process_time(),
                   wall_s=time.monotonic())


def cpu_usage(before: CpuTimes | None, after: CpuTimes | None) -> tuple[float | None, float | None]:
    """``(steal %, other processes' CPU %)`` of all CPU time between two readings (None where unknown)."""
    if before is None or after is None:
        return None, None
    dt = after.total - before.total
    if dt <= 0:
        return None, None
    steal = 100.0 * (after.steal - before.steal) / dt
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy_s = (dt - (after.idle - before.idle) - (after.steal - before.steal)) / tick
    capacity_s = dt / tick
    others = 100.0 * max(0.0, busy_s - (after.own_s - before.own_s)) / capacity_s
    return round(steal, 2), round(min(100.0, others), 1)


def machine_state(reference_samples_ms: np.ndarray | None, estimator_q: float, before: CpuTimes | None,
                  after: CpuTimes | None, *, threads: int = 1, record: bool = True) -> MachineState:
    """Judge one measurement: its reference samples (ms per run; ``estimator_q`` the percentile the models'
    estimate uses), the CPU readings around it. With ``record``, the reference time joins the baseline store
    (the baseline is the fastest ever kept; it is compared before this reading joins it)."""
    from chipfit.cost.calibration import record_reference

    steal, others = cpu_usage(before, after)
    ref = p50 = None
    if reference_samples_ms is not None and len(reference_samples_ms):
        ref = float(np.percentile(reference_samples_ms, estimator_q))
        p50 = float(np.percentile(reference_samples_ms, 50))
    base = baseline_ms(threads) if ref is not None else None
    if record and ref is not None:
        record_reference(baseline_key(threads), ref)
    return judge(MachineState(reference_ms=ref, reference_p50_ms=p50, reference_baseline_ms=base, steal_pct=steal,
                              others_cpu_pct=others))


def check_machine(*, threads: int = 1, runs: int = 60, rounds: int = 3) -> MachineState:
    """Time the reference alone (``rounds`` x ``runs``, minimum kept) and judge the machine now (~0.1 s).

    >>> st = check_machine(runs=5, rounds=1)
    >>> st.reference_ms > 0, st.busy in (True, False)
    (True, True)
    """
    fn = reference_fn(threads)
    for _ in range(5):
        fn()
    before = CpuTimes.now()
    samples = []
    for _ in range(rounds):
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - t0)
        time.sleep(0.01)
    after = CpuTimes.now()
    return machine_state(np.asarray(samples, np.float64) / 1e6, 0.0, before, after, threads=threads)


def wait_until_quiet(timeout_s: float, *, threads: int = 1, poll_s: float = 5.0,
                     check: Callable[[], MachineState] | None = None) -> MachineState:
    """Check the machine until it is not busy or ``timeout_s`` has passed; returns the last state."""
    check = check or (lambda: check_machine(threads=threads))
    deadline = time.monotonic() + max(0.0, timeout_s)
    state = check()
    while state.busy and time.monotonic() < deadline:
        log.info("machine busy (%s); checking again in %.0f s", state.busy_reason, poll_s)
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        state = check()
    return state
