"""What chipfit knows about core types and runtimes, in one place for registered and declared boards alike.

Per-op-class efficiency (cycles per MAC) of a core x runtime pair comes, in order of preference, from:

1. a fit to published end-to-end latencies (``knowledge/published.yaml``) of the MLPerf Tiny reference
   models on that core and runtime;
2. the same fit for the core's *analog* (``cores.yaml``), scaled by the ratio of ISA peaks;
3. the runtime's stated fraction of the core's ISA peak (``runtimes.yaml``), marked ``est.``.

>>> eff = efficiency("cortex-m4", "plumerai")
>>> round(eff.macs_per_cycle["conv"], 2) > 0.3, eff.source.startswith("fit")
(True, True)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import yaml
from scipy.optimize import nnls

MAC_CLASSES = ("conv", "depthwise", "dense")


@dataclass(frozen=True)
class CoreType:
    name: str
    family: str
    int8_macs_per_cycle: float
    fp32_macs_per_cycle: float
    bytes_per_cycle: float
    analog: str | None
    sources: Mapping[str, str]


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    description: str
    cores: tuple[str, ...]
    dtypes: tuple[str, ...]
    ops: tuple[str, ...]
    flash_overhead_kb: float
    ram_overhead_kb: float
    node_overhead_cycles: float
    element_cycles: float
    efficiency: Mapping[str, float]
    accelerators: tuple[str, ...] = ()
    accelerated_ops: tuple[str, ...] = ()
    cpu_fallback: str | None = None
    sources: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Efficiency:
    """Sustained MACs per cycle per op class for one core x runtime, and where the figure comes from."""

    macs_per_cycle: Mapping[str, float]
    source: str


def _read(name: str) -> Any:
    return yaml.safe_load(resources.files("chipfit.targets").joinpath(f"knowledge/{name}").read_text())


@functools.cache
def core_types() -> dict[str, CoreType]:
    out = {}
    for name, d in _read("cores.yaml").items():
        out[name] = CoreType(
            name=name, family=d["family"], int8_macs_per_cycle=d["int8_macs_per_cycle"]["value"],
            fp32_macs_per_cycle=d["fp32_macs_per_cycle"]["value"], bytes_per_cycle=d["bytes_per_cycle"]["value"],
            analog=d.get("analog"),
            sources={k: v["source"] for k, v in d.items() if isinstance(v, dict) and "source" in v},
        )
    return out


@functools.cache
def runtimes() -> dict[str, RuntimeInfo]:
    out = {}
    for name, d in _read("runtimes.yaml").items():
        if name.startswith("_"):
            continue
        eff = dict(d["efficiency"])
        src = {k: v["source"] for k, v in d.items() if isinstance(v, dict) and "source" in v}
        out[name] = RuntimeInfo(
            name=name, description=d["description"], cores=tuple(d["cores"]), dtypes=tuple(d["dtypes"]),
            ops=tuple(d["ops"]), flash_overhead_kb=d["flash_overhead_kb"]["value"],
            ram_overhead_kb=d["ram_overhead_kb"]["value"], node_overhead_cycles=d["node_overhead_cycles"]["value"],
            element_cycles=d["element_cycles"]["value"],
            efficiency={k: float(v) for k, v in eff.items() if k != "source"},
            accelerators=tuple(d.get("accelerators", ())), accelerated_ops=tuple(d.get("accelerated_ops", ())),
            cpu_fallback=d.get("cpu_fallback"), sources=src,
        )
    return out


@functools.cache
def reference_models() -> dict[str, dict[str, Any]]:
    return _read("reference_models.yaml")


@functools.cache
def published() -> list[dict[str, Any]]:
    return _read("published.yaml")


@functools.cache
def _fits() -> dict[tuple[str, str], Efficiency]:
    """Fit cycles-per-MAC per op class for every core x runtime with published rows."""
    refs = reference_models()
    rts = runtimes()
    groups: dict[tuple[str, str], list[tuple[dict[str, float], float, str]]] = {}
    for row in published():
        rt = rts[row["runtime"]]
        clock_hz = row["clock_mhz"] * 1e6
        scale = row.get("scale", 1.0)
        for model, ms in row["latency_ms"].items():
            ref = refs[model]
            fixed = ref["nodes"] * rt.node_overhead_cycles + ref["other_elements"] * rt.element_cycles
            cycles = ms * 1e-3 * clock_hz - fixed
            macs = {c: ref[c] * scale for c in MAC_CLASSES}
            groups.setdefault((row["core"], row["runtime"]), []).append((macs, cycles, row["source"]))
    fits = {}
    for key, rows in groups.items():
        a = np.array([[r[0][c] for c in MAC_CLASSES] for r in rows], dtype=float)
        b = np.array([r[1] for r in rows], dtype=float)
        mean_cpm = b.sum() / a.sum()
        w = 1.0 / b  # relative error per row
        lam = 0.05  # weak pull of every class toward the group's mean cycles/MAC
        a_aug = np.vstack([a * w[:, None], lam * np.eye(3) / mean_cpm])
        b_aug = np.concatenate([b * w, lam * np.ones(3)])
        cpm, _ = nnls(a_aug, b_aug)
        cpm = np.where(cpm <= 0.05 * mean_cpm, mean_cpm, cpm)
        sources = sorted({r[2] for r in rows})
        models = len(rows)
        fits[key] = Efficiency(
            {c: float(1.0 / v) for c, v in zip(MAC_CLASSES, cpm, strict=True)},
            f"fit to {models} published latencies: " + "; ".join(sources),
        )
    return fits


@functools.cache
def efficiency(core: str, runtime: str) -> Efficiency:
    """Sustained MACs/cycle per op class for ``core`` running ``runtime`` (see module docstring)."""
    fits = _fits()
    if (core, runtime) in fits:
        return fits[(core, runtime)]
    ct = core_types()[core]
    if ct.analog and (ct.analog, runtime) in fits:
        base = fits[(ct.analog, runtime)]
        ratio = ct.int8_macs_per_cycle / core_types()[ct.analog].int8_macs_per_cycle
        return Efficiency({c: v * ratio for c, v in base.macs_per_cycle.items()},
                          f"est.: {ct.analog} fit scaled by ISA peak ratio {ratio:g} ({base.source})")
    rt = runtimes()[runtime]
    peak = ct.int8_macs_per_cycle
    src = (rt.sources or {}).get("efficiency", "est.")
    return Efficiency({c: rt.efficiency[c] * peak for c in MAC_CLASSES},
                      f"est.: {runtime} fraction of {core} ISA peak {peak:g} MAC/cycle ({src})")
