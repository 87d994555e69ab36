"""Profile this machine once and cache the result: peak int8 and fp32 MAC rates of ONNX Runtime on one
thread (large ``MatMulInteger`` / ``MatMul``), and memory bandwidth (a large array copy). Each figure is the
best of several repetitions, the drift-stable choice on a shared machine.

>>> hp = HostProfile(device="d", int8_gmacs=100.0, fp32_gmacs=50.0, mem_bandwidth_gbps=10.0, runtime="ort",
...                  measured_at="2026-01-01T00:00:00+00:00")
>>> HostProfile.from_dict(hp.to_dict()) == hp
True
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from chipfit.paths import cache_dir
from chipfit.targets.machine import host_device

log = logging.getLogger(__name__)
_M, _K, _N = 256, 1024, 1024


@dataclass(frozen=True)
class HostProfile:
    """Measured peak rates of this machine (one ONNX Runtime thread) and its memory bandwidth."""

    device: str
    int8_gmacs: float
    fp32_gmacs: float
    mem_bandwidth_gbps: float
    runtime: str
    measured_at: str
    peak_method: str = (f"best of 10 runs of a {_M}x{_K}x{_N} MatMulInteger (uint8 x int8) / MatMul (float32) in "
                        "ONNX Runtime, 1 thread")
    bandwidth_method: str = "best of 5 numpy copies of a 64 MiB array (read + write)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostProfile:
        from dataclasses import fields

        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _matmul_model(int8: bool) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if int8:
        w = numpy_helper.from_array(rng.integers(-127, 127, (_K, _N)).astype(np.int8), "w")
        node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
        x_t, y_t = TensorProto.UINT8, TensorProto.INT32
    else:
        w = numpy_helper.from_array(rng.standard_normal((_K, _N)).astype(np.float32), "w")
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        x_t, y_t = TensorProto.FLOAT, TensorProto.FLOAT
    g = helper.make_graph([node], "peak", [helper.make_tensor_value_info("x", x_t, [_M, _K])],
                          [helper.make_tensor_value_info("y", y_t, [_M, _N])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _peak_gmacs(int8: bool) -> float:
    from chipfit.measure.local import OrtRuntime
    from chipfit.measure.modelfile import inspect_model_bytes

    m = OrtRuntime(threads=1).measure(inspect_model_bytes(_matmul_model(int8), name="peak.onnx"), rounds=2, runs=5,
                                      warmup=2)
    return _M * _K * _N / (m.latency_ms / 1e3) / 1e9


def _bandwidth_gbps() -> float:
    a = np.ones(64 * 2**20 // 8)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best / 1e9


def measure_host() -> HostProfile:
    """Run the microbenchmarks (about a second)."""
    import onnxruntime as ort

    return HostProfile(device=f"host: {host_device()}", int8_gmacs=round(_peak_gmacs(True), 2),
                       fp32_gmacs=round(_peak_gmacs(False), 2), mem_bandwidth_gbps=round(_bandwidth_gbps(), 2),
                       runtime=f"onnxruntime {ort.__version__}",
                       measured_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))


def host_profile(*, refresh: bool = False) -> HostProfile:
    """This machine's profile: measured on first use and cached in ``cache_dir()/host-profile.json``
    (measured again when the CPU or the ONNX Runtime version changes, or with ``refresh``)."""
    import onnxruntime as ort

    path = cache_dir() / "host-profile.json"
    want_device, want_rt = f"host: {host_device()}", f"onnxruntime {ort.__version__}"
    if not refresh and path.is_file():
        try:
            hp = HostProfile.from_dict(json.loads(path.read_text()))
            if hp.device == want_device and hp.runtime == want_rt:
                return hp
        except (ValueError, TypeError):
            log.warning("ignoring unreadable host profile %s", path)
    log.info("profiling this machine (first use; cached in %s)", path)
    hp = measure_host()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(hp.to_dict(), indent=2))
        tmp.replace(path)
    except OSError as e:
        log.warning("could not cache the host profile at %s: %s", path, e)
    return hp
