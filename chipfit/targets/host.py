"""The ``host`` target: this machine, run with ONNX Runtime on one intra-op thread. Clock and memory are read
from the OS; peak int8 / fp32 MAC rates and memory bandwidth are measured on first use and cached
(:mod:`chipfit.measure.hostprofile`). Its latency predicts the drift-stable (minimum over interleaved rounds)
latency ONNX Runtime measures here; ``chipfit calibrate --target host`` fits that prediction to measurements."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import psutil

from chipfit.targets.target import Target


def _cpu_mhz() -> tuple[float, str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1]), "measured: /proc/cpuinfo 'cpu MHz'"
    except OSError:
        pass
    freq = psutil.cpu_freq()
    if freq and freq.max:
        return float(freq.max), "measured: psutil.cpu_freq().max"
    return 2000.0, "est.: clock unknown, 2 GHz assumed"


@functools.cache
def host_target() -> Target:
    """Facts of this machine; cached for the process."""
    mhz, mhz_src = _cpu_mhz()
    arch = platform.machine().lower()
    core = "x86-64" if arch in ("x86_64", "amd64") else "cortex-a72"
    ram_kb = psutil.virtual_memory().total / 1024
    from chipfit.measure.hostprofile import host_profile

    hp = host_profile()
    disk_kb = psutil.disk_usage(str(Path.cwd())).free / 1024
    return Target(
        name="host", core=core, clock_mhz=round(mhz, 1), sram_kb=round(ram_kb), flash_kb=round(disk_kb),
        runtimes=("onnxruntime", "tflite-xnnpack"), active_power_mw=10_000.0, sleep_power_uw=5e6, cores=1,
        mem_bandwidth_gbps=hp.mem_bandwidth_gbps, peak_gmacs={"int8": hp.int8_gmacs, "float32": hp.fp32_gmacs},
        description=f"this machine ({platform.processor() or arch}, {psutil.cpu_count()} logical CPUs); "
        "ONNX Runtime with one intra-op thread",
        origin="host",
        sources={
            "clock_mhz": mhz_src, "sram_kb": "measured: psutil.virtual_memory().total",
            "flash_kb": "measured: free disk space of the working directory",
            "cores": "chipfit runs ONNX Runtime with one intra-op thread on the host",
            "mem_bandwidth_gbps": f"measured {hp.measured_at[:10]}: {hp.bandwidth_method}",
            "peak_gmacs": f"measured {hp.measured_at[:10]} with {hp.runtime}: {hp.peak_method}",
            "active_power_mw": "est.: 10 W for one busy core (no RAPL reading)",
            "sleep_power_uw": "est.: 5 W idle",
        },
    )
