"""``calibrate``: measure generated probe networks on a target's runtime and fit the cost model to them.

>>> from chipfit.measure.fake import FakeRuntime
>>> import tempfile
>>> cal = calibrate("host", runtime=FakeRuntime(), probes=6, workdir=tempfile.mkdtemp(), save=False)
>>> cal.measurements, cal.target, cal.fit.within_20 > 0.5
(6, 'host', True)
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from chipfit.cost.calibration import Calibration, calibration_path, fit_calibration
from chipfit.errors import UsageError
from chipfit.measure.base import Runtime
from chipfit.measure.record import Measurement

log = logging.getLogger(__name__)

DEFAULT_PROBES = 50
CALIBRATION_SEED = 1000  # probe draws for calibration; bench/predictor.py judges on other seeds


def default_runtime(target: str) -> Runtime:
    """The runtime a target is measured with when no agent is given: only ``host`` runs locally."""
    if target != "host":
        raise UsageError(f"'{target}' is not this machine: calibrating it needs the device. Run `chipfit agent` "
                         f"on the {target} and give --agent URL --token-file F.")
    from chipfit.measure.local import OrtRuntime

    return OrtRuntime(threads=1)


def measure_probes(runtime: Runtime, paths: list[Path], *, rounds: int = 5, runs: int = 20) -> list[Measurement]:
    """Measure probe files interleaved (drift-stable minimum)."""
    return runtime.measure_many(paths, rounds=rounds, runs=runs, warmup=5, estimator="min")


def calibrate(target: str = "host", *, runtime: Runtime | None = None, probes: int = DEFAULT_PROBES,
              dtype: str = "int8", seed: int = CALIBRATION_SEED, rounds: int = 5, runs: int = 20,
              workdir: str | Path | None = None, save: bool = True, runtime_name: str = "onnxruntime") -> Calibration:
    """Build ``probes`` networks from chipfit's search spaces, measure them on ``runtime`` (default: ONNX
    Runtime, one thread, on this machine), fit the feature costs and (``save``) cache the result where
    :func:`chipfit.cost.calibration.find_calibration` finds it."""
    from chipfit.measure.probes import make_probes

    if probes < 3:
        raise UsageError(f"calibration needs at least 3 probe networks; given {probes}.")
    rt = runtime or default_runtime(target)
    if probes < 30:
        log.warning("calibrating on %d probes: the fit has about 25 feature costs, so expect large errors "
                    "(50 probes gave a median error of ~4%% on unseen networks, BENCHMARKS.md)", probes)
    with tempfile.TemporaryDirectory(prefix="chipfit-probes-") as tmp:
        d = Path(workdir) if workdir else Path(tmp)
        built = make_probes(probes, d, seed=seed, dtype=dtype)
        log.info("measuring %d probe networks on %s", len(built), rt.describe())
        ms = measure_probes(rt, [p.path for p in built], rounds=rounds, runs=runs)
    cal = fit_calibration([p.graph for p in built], [m.latency_ms for m in ms], target=target, runtime=runtime_name,
                          dtype=dtype, device=ms[0].device, estimator=ms[0].estimator.split(" interleaved")[0]
                          + " (interleaved)", runtime_version=ms[0].runtime,
                          source=f"chipfit calibrate: {len(built)} probes from the search spaces, seed {seed}")
    if save:
        path = cal.save(calibration_path(target, runtime_name, dtype, cal.device))
        log.info("calibration saved to %s", path)
    return cal
