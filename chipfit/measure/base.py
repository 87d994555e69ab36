"""The ``Runtime`` interface and the drift-stable, interleaved timing loop every local runtime shares.

This machine (and most shared machines) drifts in speed by tens of percent from minute to minute. Timing
one model in one block and another model a minute later compares the machine's mood, not the models. So
:func:`measure_interleaved` loads every model first, then runs short blocks of each model in turn, rotating
the order each round, and reports a low-order statistic (by default the minimum per-inference time over all
rounds) as the stable estimate, beside the usual percentiles.

>>> from chipfit.measure import create_runtime
>>> rt = create_runtime("fake")
>>> rt.name
'fake'
>>> create_runtime("onnxrunime")  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
chipfit.errors.UsageError: unknown runtime 'onnxrunime' ... Did you mean 'onnxruntime'?
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from chipfit.errors import MeasurementError, UsageError
from chipfit.measure.modelfile import ModelFile, inspect_model
from chipfit.measure.power import PowerMeter
from chipfit.measure.record import Measurement
from chipfit.targets.machine import host_device

log = logging.getLogger(__name__)
ESTIMATORS = ("min", "p5", "p10", "p25", "median")
Artifact = str | Path | ModelFile


def _as_model(a: Artifact) -> ModelFile:
    return a if isinstance(a, ModelFile) else inspect_model(a)


def summarise(samples_ms: np.ndarray, estimator: str) -> tuple[float, float, float, float]:
    """``(estimate, p50, p90, p99)`` of per-inference times in ms."""
    if estimator not in ESTIMATORS:
        raise UsageError(f"unknown estimator '{estimator}': expected one of {', '.join(ESTIMATORS)}.")
    q = {"min": 0.0, "p5": 5.0, "p10": 10.0, "p25": 25.0, "median": 50.0}[estimator]
    p50, p90, p99 = np.percentile(samples_ms, [50, 90, 99])
    return float(np.percentile(samples_ms, q)), float(p50), float(p90), float(p99)


class Runtime(ABC):
    """Something that runs a model file and times it. Subclasses implement :meth:`open` (load a model and
    return a zero-argument callable that runs one inference) and :meth:`describe`; the timing loop is shared.
    A remote runtime (the device agent) overrides :meth:`measure_many` instead."""

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ("onnx", "tflite")
    local: ClassVar[bool] = False  # runs on this machine: time the reference workload beside the models

    def __init__(self, threads: int = 1) -> None:
        self.threads = int(threads)

    @abstractmethod
    def describe(self) -> str:
        """Runtime, version and settings in words, e.g. ``onnxruntime 1.32.0 (CPU, 1 intra-op thread)``."""

    def device(self) -> str:
        return f"host: {host_device()}"

    @abstractmethod
    def open(self, model: ModelFile, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        """Load ``model`` and bind ``inputs``; return a callable that runs one inference."""

    def peak_memory(self, model: ModelFile) -> tuple[int, str] | None:
        """Peak memory of a fresh process running ``model``, minus the runtime's baseline, and how it was
        measured; ``None`` where this runtime cannot say."""
        return None

    def max_batch(self) -> int | None:
        """The most models one :meth:`measure_many` call may take (``None``: no limit)."""
        return None

    def check_kind(self, model: ModelFile) -> None:
        if model.kind not in self.kinds:
            other = {"onnx": "onnxruntime", "tflite": "litert"}[model.kind]
            raise MeasurementError(f"{self.name} does not run {model.kind} files ('{model.name}'); use the "
                                   f"'{other}' runtime for it.")

    def measure(self, artifact: Artifact, inputs: dict[str, np.ndarray] | None = None, **kw: Any) -> Measurement:
        """Time one model. Keyword arguments are those of :meth:`measure_many`."""
        return self.measure_many([artifact], [inputs] if inputs is not None else None, **kw)[0]

    def measure_many(self, artifacts: Sequence[Artifact], inputs: Sequence[dict[str, np.ndarray]] | None = None,
                     *, rounds: int = 5, runs: int = 20, warmup: int = 5, estimator: str = "min",
                     memory: bool = False, seed: int = 0, energy: bool = False,
                     reference: bool | None = None) -> list[Measurement]:
        """Time several models interleaved (see :func:`measure_interleaved`)."""
        return measure_interleaved(self, artifacts, inputs, rounds=rounds, runs=runs, warmup=warmup,
                                   estimator=estimator, memory=memory, seed=seed, energy=energy, reference=reference)


def measure_interleaved(runtime: Runtime, artifacts: Sequence[Artifact],
                        inputs: Sequence[dict[str, np.ndarray]] | None = None, *, rounds: int = 5, runs: int = 20,
                        warmup: int = 5, estimator: str = "min", memory: bool = False,
                        seed: int = 0, clock: Callable[[], int] = time.perf_counter_ns, energy: bool = False,
                        meter: PowerMeter | None = None, energy_inferences: int = 500,
                        reference: bool | None = None) -> list[Measurement]:
    """Load every model, warm each up, then run ``rounds`` rounds; in each, every model runs ``runs`` timed
    inferences, in an order rotated round by round. Returns one Measurement per model, in input order.

    With ``energy``, each model then runs ``energy_inferences`` more inferences under ``meter`` (default: this
    machine's RAPL counters); a meter that cannot read leaves ``energy_mj`` empty and says why in
    ``energy_method``, and the timings stand.

    With ``reference`` (default: for runtimes on this machine), the fixed reference workload of
    :mod:`chipfit.measure.reference` runs in the rotation as one more model, and ``/proc/stat`` is read around
    the rounds: every Measurement says how fast the machine was and whether it was busy.

    >>> from chipfit.measure.fake import fake_model
    >>> from chipfit.measure.local import OrtRuntime
    >>> ms = measure_interleaved(OrtRuntime(), [fake_model(macs=1000), fake_model(macs=5000)], rounds=2, runs=3)
    >>> [m.runs for m in ms], ms[0].estimator
    ([6, 6], 'min of 6 runs in 2 rounds interleaved with 1 other models')
    """
    if rounds < 1 or runs < 1 or warmup < 0:
        raise UsageError(f"rounds and runs must be >= 1 and warmup >= 0; given rounds={rounds}, runs={runs}, "
                         f"warmup={warmup}.")
    summarise(np.zeros(1), estimator)  # validate the estimator name before loading anything
    models = [_as_model(a) for a in artifacts]
    for m in models:
        runtime.check_kind(m)
    feeds = list(inputs) if inputs is not None else [m.random_inputs(seed) for m in models]
    if len(feeds) != len(models):
        raise UsageError(f"{len(models)} models but {len(feeds)} input sets: give one per model or none.")
    fns = [runtime.open(m, f) for m, f in zip(models, feeds, strict=True)]
    use_ref = runtime.local if reference is None else reference
    if use_ref:
        from chipfit.measure.reference import CpuTimes, reference_fn

        fns.append(reference_fn(runtime.threads))
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[int]] = [[] for _ in fns]
    n = len(fns)
    before = CpuTimes.now() if use_ref else None
    for r in range(rounds):
        for k in range(n):
            i = (k + r) % n
            fn, out = fns[i], samples[i]
            for _ in range(runs):
                t0 = clock()
                fn()
                out.append(clock() - t0)
    state: dict[str, Any] = {}
    if use_ref:
        from chipfit.measure.reference import machine_state

        after = CpuTimes.now()
        fns.pop()
        ref_samples = np.asarray(samples.pop(), dtype=np.float64) / 1e6
        q = {"min": 0.0, "p5": 5.0, "p10": 10.0, "p25": 25.0, "median": 50.0}[estimator]
        st = machine_state(ref_samples, q, before, after, threads=runtime.threads)
        if st.busy:
            log.warning("the machine was busy while measuring %d model(s): %s", len(models), st.busy_reason)
        state = {"reference_ms": st.reference_ms, "reference_baseline_ms": st.reference_baseline_ms,
                 "steal_pct": st.steal_pct, "others_cpu_pct": st.others_cpu_pct, "busy": st.busy,
                 "busy_reason": st.busy_reason}
        n -= 1
    desc, dev = runtime.describe(), runtime.device()
    est_name = (f"{estimator} of {rounds * runs} runs in {rounds} rounds interleaved with {n - 1} other models"
                if n > 1 else f"{estimator} of {rounds * runs} runs in {rounds} rounds")
    result = []
    energies = [_energy(fn, meter, energy_inferences) for fn in fns] if energy else [(None, None)] * n
    for m, s, (e_mj, e_method) in zip(models, samples, energies, strict=True):
        est, p50, p90, p99 = summarise(np.asarray(s, dtype=np.float64) / 1e6, estimator)
        mem = runtime.peak_memory(m) if memory else None
        result.append(Measurement(
            model=m.name, runtime=desc, device=dev, latency_ms=est, estimator=est_name, p50_ms=p50, p90_ms=p90,
            p99_ms=p99, runs=rounds * runs, peak_memory_bytes=mem[0] if mem else None,
            memory_method=mem[1] if mem else None, energy_mj=e_mj, energy_method=e_method,
            input_shapes=tuple(i.shape for i in m.inputs), **state))
    return result


def _energy(fn: Callable[[], Any], meter: PowerMeter | None, inferences: int) -> tuple[float | None, str]:
    from chipfit.measure.power import RaplMeter

    meter = meter or RaplMeter()
    try:
        r = meter.measure(fn, inferences=inferences, idle_s=0.5)
    except MeasurementError as e:
        return None, f"not measured: {e}"
    return r.energy_mj_per_inference, f"{r.method} ({r.inferences} inferences, above 0.5 s of idle)"


