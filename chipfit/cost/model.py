"""The analytical cost model: ``CostModel().estimate(graph, target) -> Cost``.

Per node: MACs, params, the bytes alive while it runs, and latency = max(compute, memory) + per-op
overhead, where compute uses the sustained MACs/cycle of the target's core x runtime for the node's op
class (see :mod:`chipfit.targets.knowledge`) and memory uses the core's bytes/cycle or the board's memory
bandwidth. Ops a runtime offloads to an accelerator run at the accelerator's rate. Totals: flash (weights
at the deployed dtype + biases as int32 + runtime code), RAM (planned tensor arena + runtime state +
front-end buffers), latency, energy per inference. Every figure is ``predicted``; latency and energy also carry
the prediction path that produced them (``predicted_by``: fitted board, same core other board, analogous core,
analytical; see :mod:`chipfit.targets.knowledge`) and that path's 80 % interval from cross-validation over the
published MLPerf Tiny rows (None where no cross-validated error exists, e.g. an application CPU).

>>> import torch
>>> from chipfit import create_target
>>> from chipfit.graph import from_torch
>>> g = from_torch(torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU()), (1, 1, 16, 16))
>>> c = CostModel().estimate(g, create_target("stm32l4r5"))
>>> c.macs, c.source, c.latency_ms > 0
(14112, 'predicted', True)
>>> c.runtime_version, c.predicted_by
('10.2', 'fitted board')
>>> lo, hi = c.latency_interval_ms
>>> lo < c.latency_ms < hi
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chipfit.cost.arena import ArenaPlan, buffers, plan, tflm_ram
from chipfit.cost.calibration import CPI_RUN_FILE, SCHEME, Calibration, CpiCalibration
from chipfit.cost.instructions import InstructionEstimate, estimate_instructions, published_cpi
from chipfit.graph.opgraph import DTYPE_BYTES, OpClass, OpGraph
from chipfit.logging import get_logger
from chipfit.targets.knowledge import (
    MAC_CLASSES,
    board_power_mw,
    boards_of,
    core_types,
    efficiency,
    energy_interval,
    runtimes,
    split_runtime,
)
from chipfit.targets.memory import memory_factor
from chipfit.targets.target import Target

_log = get_logger(__name__)
_PARALLEL_EFFICIENCY = 0.7  # est.: share of each extra application core a runtime turns into speed-up
# Data-movement ops (what litert-torch emits around the layers: TRANSPOSE between PyTorch's NCHW and TFLite's
# NHWC, PAD before a convolution whose padding SAME cannot express) are priced as the bytes they move (input read
# + output written) at the core's copy rate, and their layers say bound "copy". On a microcontroller that rate is
# what TFLM + CMSIS-NN's kernels sustain, measured on the emulated Cortex-M4 (`chipfit measure --board
# qemu:cortex-m4`, per-op instructions of 9 litert-torch exports of the image, audio and series spaces,
# 2026-11-30): PAD (arm_pad_s8: a memcpy per row and a memset per padded run) 0.45-0.7 instructions per byte
# moved on pads of 4-13 KB moved (1-3 on pads under 1 KB, where its fixed ~500 instructions dominate);
# TRANSPOSE (arm_transpose_s8, a byte gather) 3.0-3.4 per byte moved on 1.5-3.5 KB (3.6-6.9 on smaller ones);
# taken as cycles per byte (CPI 1; the published boards run 1.5-2.7 cycles per emulated instruction, so these
# are optimistic by that much, as the analytical MAC path is). Elsewhere (application cores) the core's bus
# rate: cores.yaml bytes_per_cycle, or the board's memory bandwidth.
COPY_CYCLES_PER_BYTE = {"pad": 0.5, "transpose": 3.0}


@dataclass(frozen=True)
class LayerCost:
    name: str
    op: str
    op_type: str
    macs: int
    params: int
    out_shape: tuple[int, ...]
    ram_bytes: int
    latency_ms: float
    bound: str
    unit: str
    activation: str | None = None


@dataclass(frozen=True)
class Cost:
    """A model's predicted cost on one target x runtime. ``to_dict()`` is the JSON form."""

    model: str
    target: str
    runtime: str
    dtype: str
    macs: int
    params: int
    weights_bytes: int
    flash_bytes: int
    ram_bytes: int
    arena_bytes: int
    arena_lower_bound_bytes: int
    frontend_ram_bytes: int
    latency_ms: float
    energy_mj: float
    layers: tuple[LayerCost, ...]
    unsupported: tuple[str, ...] = ()
    efficiency_source: str = ""
    source: str = "predicted"
    basis: str = ""
    arena_plan: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    runtime_version: str | None = None
    predicted_by: str = ""  # the prediction path of latency and energy (or "calibrated")
    latency_interval_ms: tuple[float, float] | None = None  # 80 % interval, from cross-validation of the path
    energy_interval_mj: tuple[float, float] | None = None
    power_source: str = ""  # where the active power behind energy_mj comes from
    energy_predicted_by: str = ""  # the path of the active power behind energy_mj (latency path x power path)
    memory_factor: float = 1.0  # cycles on this board's memory system over a board with flash wait states hidden
    memory_note: str = ""  # why (chipfit.targets.memory)

    @property
    def supported(self) -> bool:
        return not self.unsupported

    def to_dict(self, *, with_plan: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(layer) for layer in self.layers]
        d["unsupported"] = list(self.unsupported)
        if not with_plan:
            d.pop("arena_plan")
        return d


class CostModel:
    """Analytical cost model. Optionally calibrated: ``calibrations`` are fitted latency models
    (:class:`~chipfit.cost.calibration.Calibration`) that replace the analytical latency for the target x
    runtime x dtype they were measured on; ``calibration`` is a legacy per-class scale on the analytical one.
    With ``auto_calibration`` (the default) a calibration cached by ``chipfit calibrate`` is picked up: for
    ``host`` the one made on this machine, for a board the newest one made through its agent.

    A calibration keeps the time the machine took for chipfit's reference workload when it was measured; when
    it is used, that time is checked against ``reference_ms`` (the machine's reference time now, as a caller
    that has just measured it gives it), else against this machine's quiet baseline in the cache (``host``
    only). Where they differ by more than 5 %, the calibrated latency is rescaled by their ratio and the
    prediction's ``basis`` and ``efficiency_source`` say so."""

    def __init__(self, calibration: dict[str, float] | None = None, *,
                 calibrations: Sequence[Calibration] = (), auto_calibration: bool = True,
                 cpi_calibrations: Sequence[CpiCalibration] = (), reference_ms: float | None = None) -> None:
        self.reference_ms = reference_ms  # the machine's reference-workload time now, if the caller measured it
        self.calibration = dict(calibration or {})
        self.calibrations = tuple(calibrations)
        self.cpi_calibrations = tuple(cpi_calibrations)  # boards' cycles per instruction (calibrate --serial)
        self.auto_calibration = auto_calibration
        self._found: dict[tuple[str, str, str, str], Calibration | None] = {}
        self._warned: set[tuple[str, float]] = set()

    @classmethod
    def for_run(cls, run_dir: str | Path) -> CostModel:
        """The cost model of a run: calibrated by the run's ``calibration.json`` when it has one, and never by
        a cache outside the run (so a resumed run prices candidates exactly as before)."""
        p = Path(run_dir) / "calibration.json"
        cals = [Calibration.load(p)] if p.is_file() else []
        cpi = Path(run_dir) / CPI_RUN_FILE
        cpis = [CpiCalibration.load(cpi)] if cpi.is_file() else []
        for cal in cals:
            if cal.scheme != SCHEME:
                _log.warning("%s was fitted with feature scheme %s, this chipfit uses %s: it is ignored and the "
                             "analytical model prices candidates (delete the file to calibrate again)", p, cal.scheme,
                             SCHEME)
        return cls(calibrations=cals, auto_calibration=False, cpi_calibrations=cpis)

    def calibration_for(self, target: Target, runtime: str, dtype: str) -> Calibration | None:
        """The calibration that applies to ``target`` x ``runtime`` x ``dtype``, if any."""
        for cal in self.calibrations:
            if cal.applies_to(target.name, runtime, dtype):
                return cal
        if not self.auto_calibration:
            return None
        key = (target.name, target.origin, runtime, dtype)
        if key not in self._found:  # one cache lookup per model instance, not per estimate
            self._found[key] = self._find(target, runtime, dtype)
        return self._found[key]

    @staticmethod
    def _find(target: Target, runtime: str, dtype: str) -> Calibration | None:
        from chipfit.cost.calibration import find_calibration

        if target.origin == "host":
            from importlib.metadata import version

            from chipfit.targets.machine import host_device

            ort_version = version("onnxruntime")  # the version installed, without importing the runtime
            cal = find_calibration("host", runtime, dtype, f"host: {host_device()}")
            stale = cal is not None and cal.runtime_version.startswith("onnxruntime ") and \
                not cal.runtime_version.startswith(f"onnxruntime {ort_version} ")
            if stale:
                _log.warning("ignoring the host calibration made with %s (now onnxruntime %s): run `chipfit "
                             "calibrate` again", cal.runtime_version, ort_version)
                return None
            return cal
        return find_calibration(target.name, runtime, dtype)  # made through a device agent

    def estimate(self, graph: OpGraph, target: Target, *, runtime: str | None = None, dtype: str = "int8",
                 frontend_ops: int = 0, frontend_ram_bytes: int = 0) -> Cost:
        """Predict ``graph``'s cost on ``target``. ``frontend_ops`` / ``frontend_ram_bytes`` add a DSP
        front-end (e.g. MFCC) that runs before the network on the same core."""
        rt_name, rt_version = split_runtime(runtime or target.runtime)
        rt_version = rt_version or target.runtime_version(rt_name)
        rt = runtimes()[rt_name]
        ct = core_types()[target.core]
        unsupported = []
        if dtype not in rt.dtypes:
            unsupported.append(f"dtype {dtype}: {rt_name} runs {', '.join(rt.dtypes)}")
        cpu_rt = rt.cpu_fallback if rt.accelerators and rt.cpu_fallback in runtimes() else rt_name
        if target.core not in runtimes()[cpu_rt].cores:
            cpu_rt = rt_name
        on_board = target.origin == "builtin"  # a registered profile: its published rows count as this board
        eff = efficiency(target.core, cpu_rt, rt_version if cpu_rt == rt_name else None,
                         board=target.name if on_board else None, clock_mhz=target.clock_mhz)
        fp_scale = 1.0
        if dtype in ("float32", "float16"):
            fp_scale = ct.fp32_macs_per_cycle / ct.int8_macs_per_cycle
        act_bytes = DTYPE_BYTES.get(dtype, 1)

        def nbytes(t: str) -> int:
            info = graph.tensors.get(t)
            return info.numel * act_bytes if info is not None else 0

        tflm = rt_name in ("tflm", "tflm-cmsis-nn")
        persistent = 0
        if tflm:  # TFLM's own planner and lifetimes, plus its persistent tail (chipfit.cost.arena.tflm_ram)
            def tensor_bytes(t: str) -> int:  # a graph read from a .tflite knows each tensor's own dtype
                info = graph.tensors.get(t)
                if info is None:
                    return 0
                return info.nbytes() if graph.source == "tflite" else info.numel * act_bytes

            # CMSIS-NN's scratch buffers follow the core's code path: Helium (MVE), DSP or plain C
            isa = "mve" if ct.mve else "dsp" if ct.dsp else "none"
            arena, persistent, _ = tflm_ram(graph, tensor_bytes, kernels="cmsis-nn" if rt_name == "tflm-cmsis-nn"
                                            else "reference", isa=isa)
        else:
            arena = plan(buffers(graph, nbytes))
        step0 = 1 if tflm else 0  # TFLM's step of node i is i + 1
        clock_hz = target.clock_mhz * 1e6
        parallel = 1.0 + _PARALLEL_EFFICIENCY * (target.cores - 1)
        if target.mem_bandwidth_gbps:
            bytes_per_s = target.mem_bandwidth_gbps * 1e9
        else:
            bytes_per_s = ct.bytes_per_cycle * clock_hz
        acc = target.accelerator if rt.accelerators else None
        acc_energy_mj = 0.0
        layers: list[LayerCost] = []
        total_s = 0.0
        peak = (target.peak_gmacs or {}).get("int8" if dtype == "int8" else "float32")
        peak_macs_s = peak * 1e9 if peak else None  # measured peak (the host), used with the runtime's efficiency share
        cal = self.calibration_for(target, rt_name, dtype)
        cal_ms = cal.node_ms(graph) if cal is not None else None
        speed, speed_words = self._speed_check(cal, target) if cal is not None else (1.0, "")
        if cal_ms is not None and speed != 1.0:
            cal_ms = [v * speed for v in cal_ms]
        ins = None  # the instruction path: emulated instructions per layer x the board's cycles per instruction
        if cal is None and acc is None and dtype == "int8" and ct.family == "mcu":
            ins = self._instructions(graph, target, rt_name, rt_version, on_board)
        # the memory system (flash wait states at this clock, caches): the fits are in cycles of boards whose
        # flash wait states are hidden; a board that pays them runs its CPU layers that much slower per cycle
        mem_f, mem_note = memory_factor(target.memory, target.clock_mhz) if ct.family == "mcu" else (1.0, "")
        if cal is not None:
            total_s += cal.coefficients.get("const", 0.0) * speed / 1e3
        for i, n in enumerate(graph.nodes):
            if n.op.value not in rt.ops or (n.op is OpClass.OTHER and n.op_type not in rt.ops):
                unsupported.append(f"op {n.op_type} ({n.name}): not supported by {rt_name}")
            out_shape = graph.tensors[n.outputs[0]].shape if n.outputs and n.outputs[0] in graph.tensors else ()
            out_elems = graph.tensors[n.outputs[0]].numel if n.outputs and n.outputs[0] in graph.tensors else 0
            if n.op.is_alias:
                layers.append(LayerCost(n.name, n.op.value, n.op_type, 0, 0, out_shape, arena.live_bytes[i + step0],
                                        0.0, "alias", "cpu"))
                continue
            on_acc = acc is not None and n.op.value in rt.accelerated_ops
            scale = self.calibration.get(n.op.value, 1.0)
            moved = n.weights * (1 if dtype == "int8" else act_bytes) + n.biases * 4
            moved += sum(nbytes(t) for t in n.inputs) + sum(nbytes(t) for t in n.outputs)
            if on_acc:
                acc_hz = acc.clock_mhz * 1e6
                rate = acc.macs_per_cycle * rt.efficiency.get(n.op.value, 0.1) * acc_hz
                compute_s = n.macs / rate if n.op.value in MAC_CLASSES else out_elems * rt.element_cycles / acc_hz
                memory_s = moved / bytes_per_s
                overhead_s = rt.node_overhead_cycles / clock_hz
                unit = acc.kind
            else:
                if n.op.value in MAC_CLASSES and peak_macs_s:
                    share = eff.macs_per_cycle[n.op.value] / ct.int8_macs_per_cycle
                    compute_s = n.macs / (peak_macs_s * share * parallel)
                elif n.op.value in MAC_CLASSES:
                    compute_s = n.macs / (eff.macs_per_cycle[n.op.value] * fp_scale * clock_hz * parallel)
                elif n.op.value in COPY_CYCLES_PER_BYTE:  # bytes moved at the copy rate (memory_s below)
                    compute_s = moved * COPY_CYCLES_PER_BYTE[n.op.value] / clock_hz if ct.family == "mcu" else 0.0
                else:
                    elems = out_elems if n.op is not OpClass.POOL else sum(
                        graph.tensors[t].numel for t in n.inputs if t in graph.tensors)
                    compute_s = elems * rt.element_cycles / (fp_scale ** 0.5) / clock_hz
                memory_s = moved / bytes_per_s
                overhead_s = runtimes()[cpu_rt].node_overhead_cycles / clock_hz
                unit = "cpu"
            if unit == "cpu":
                compute_s *= mem_f
            body = max(compute_s, memory_s)
            seconds = body * scale + overhead_s
            if cal_ms is not None:
                seconds = cal_ms[i] / 1e3
            elif ins is not None:
                seconds = ins.instructions[i] * ins.cpi / clock_hz
            if on_acc and acc.power_mw:
                acc_energy_mj += seconds * acc.power_mw
            total_s += seconds
            bound = "compute" if compute_s >= memory_s else "memory"
            if n.op.value in COPY_CYCLES_PER_BYTE and not on_acc and cal_ms is None and ins is None:
                bound = "copy"  # priced at the copy rate (a calibration or the instruction path prices it else)
            if overhead_s > body:
                bound = "overhead"
            layers.append(LayerCost(n.name, n.op.value, n.op_type, n.macs, n.params, out_shape,
                                    arena.live_bytes[i + step0] if i + step0 < len(arena.live_bytes) else 0,
                                    seconds * 1e3, bound,
                                    unit, n.activation))
        if frontend_ops:
            dsp_s = frontend_ops / (eff.macs_per_cycle["dense"] * clock_hz)
            total_s += dsp_s
            layers.insert(0, LayerCost("frontend", OpClass.DSP.value, "mfcc", 0, 0, (), int(frontend_ram_bytes),
                                       dsp_s * 1e3, "compute", "cpu"))
        weight_bytes = graph.weights * (1 if dtype == "int8" else act_bytes) + graph.biases * 4
        per_node_meta = 64  # est.: flatbuffer op + tensor metadata per node
        flash = weight_bytes + int(rt.flash_overhead_kb * 1024) + per_node_meta * len(graph.nodes)
        # TFLM: the planned head + the persistent tail it allocates (no flat runtime allowance)
        overhead = persistent if tflm else int(rt.ram_overhead_kb * 1024)
        ram = arena.arena + overhead + int(frontend_ram_bytes)
        latency_ms = total_s * 1e3
        power_mw, power_source, power_path = self._power(target, rt_name, rt_version)
        energy_mj = total_s * power_mw + acc_energy_mj  # s x mW = mJ
        label = f"{rt_name}@{rt_version}" if rt_version else rt_name
        basis = (f"{label} on {target.name} ({target.core} @ {target.clock_mhz:g} MHz"
                 + (f" + {acc.kind}" if acc else "") + f"), {dtype}")
        mcu = ct.family == "mcu"
        path = "calibrated" if cal is not None else eff.path + (f" (CPU part; {acc.kind} analytical)" if acc else "")
        stated = mcu and cal is None and acc is None  # cross-validated only for a CPU-only microcontroller
        lat_iv = eff.interval if stated else None
        source = cal.describe() + f"; {speed_words}" if cal is not None else eff.source
        if ins is not None:
            path, lat_iv, source = ins.path, ins.interval, ins.describe(len(graph.nodes))
        if lat_iv is not None and mem_f != 1.0 and cal is None and ins is None:
            # the memory factor is an estimate: widen the interval to span no stall up to twice the stall
            lat_iv = (lat_iv[0] / mem_f, lat_iv[1] * (2.0 * mem_f - 1.0) / mem_f)
        en_iv = None
        if stated and lat_iv is not None:
            en_iv = energy_interval(lat_iv, power_path)
        if mem_f != 1.0 and cal is None and ins is None:
            source += f"; memory system: {mem_note}"
        return Cost(
            model=graph.name, target=target.name, runtime=rt_name, dtype=dtype, macs=graph.macs, params=graph.params,
            weights_bytes=weight_bytes, flash_bytes=flash, ram_bytes=ram, arena_bytes=arena.arena,
            arena_lower_bound_bytes=arena.lower_bound, frontend_ram_bytes=int(frontend_ram_bytes),
            latency_ms=latency_ms, energy_mj=energy_mj, layers=tuple(layers), unsupported=tuple(unsupported),
            efficiency_source=source,
            basis=basis + ((" (calibrated" + (f"; rescaled x{speed:.3f} to the machine's speed by the reference "
                                              "workload)" if speed != 1.0 else ")")) if cal is not None else ""),
            arena_plan=_plan_dict(arena),
            runtime_version=rt_version, predicted_by=path,
            latency_interval_ms=(latency_ms * lat_iv[0], latency_ms * lat_iv[1]) if lat_iv else None,
            energy_interval_mj=(energy_mj * en_iv[0], energy_mj * en_iv[1]) if en_iv else None,
            power_source=power_source, energy_predicted_by=f"{path} x power: {power_path}",
            memory_factor=mem_f, memory_note=mem_note,
        )

    def _speed_check(self, cal: Calibration, target: Target) -> tuple[float, str]:
        """The calibration's reference timing against the machine's now (``reference_ms``), else against the
        quiet baseline this machine keeps in the cache (host only): ``(scale, words)``."""
        from chipfit.cost.calibration import read_reference_baseline

        now, what = self.reference_ms, "measured now"
        if now is None and target.origin == "host" and cal.reference_id:
            rec = read_reference_baseline(cal.reference_id)
            now, what = (float(rec["min_ms"]), "this machine's quiet baseline") if rec else (None, "")
        scale, words = cal.reference_scale(now)
        if scale != 1.0:
            key = (cal.created, round(scale, 3))
            if key not in self._warned:
                self._warned.add(key)
                _log.warning("the %s calibration was measured while the machine ran chipfit's reference workload "
                             "%.0f%% %s than %s: its latencies are rescaled x%.3f", cal.target,
                             abs(1 / scale - 1) * 100, "slower" if scale < 1 else "faster", what, scale)
        return scale, words + (f" ({what})" if what and now is not None else "")

    def _instructions(self, graph: OpGraph, target: Target, runtime: str, version: str | None,
                      on_board: bool) -> InstructionEstimate | None:
        """The instruction path where it applies (:mod:`chipfit.cost.instructions`): a cycles-per-instruction
        calibration of this board (``chipfit calibrate --serial``), else the CPI fitted on this very board's
        published rows of ``runtime@version``."""
        board_cal = next((c for c in self.cpi_calibrations if c.applies_to(target.name, target.core, runtime,
                                                                           target.clock_mhz)), None)
        if board_cal is None and self.auto_calibration:
            from chipfit.cost.calibration import find_cpi_calibration

            board_cal = find_cpi_calibration(target.name, target.core, runtime, target.clock_mhz)
        cpi = published_cpi(boards_of(target.name, target.clock_mhz), runtime, version) if on_board else None
        return estimate_instructions(graph, target.core, cpi, calibrated=board_cal)

    @staticmethod
    def _power(target: Target, runtime: str, version: str | None) -> tuple[float, str, str]:
        """Active power during inference, first of: published energy / latency on this very board; the
        profile's power model (current per MHz x clock x supply + board overhead); a declared active power;
        the published mW/MHz of other boards with the same core; the estimated default. Returns the power, where
        it comes from, and its power path (:data:`chipfit.targets.knowledge.POWER_PATHS`)."""
        mcu = core_types()[target.core].family == "mcu"
        name = target.name if target.origin == "builtin" else ""
        if mcu and name:
            found = board_power_mw(name, target.clock_mhz, target.core, runtime, version, same_core=False)
            if found is not None:
                return found
        model = target.power_model_mw
        if model is not None:
            return model, (f"power model: {target.run_current_ua_per_mhz:g} uA/MHz x {target.clock_mhz:g} MHz x "
                           f"{target.supply_v:g} V + {target.board_overhead_mw or 0:g} mW board "
                           f"({target.sources.get('run_current_ua_per_mhz', '')})"), "power model"
        src = target.sources.get("active_power_mw", "est.")
        if mcu and src.startswith("est."):
            found = board_power_mw("", target.clock_mhz, target.core, runtime, version)
            if found is not None:
                return found
        return target.active_power_mw, f"active power {target.active_power_mw:g} mW ({src})", "declared"

def _plan_dict(p: ArenaPlan) -> dict[str, Any]:
    return p.to_dict()
