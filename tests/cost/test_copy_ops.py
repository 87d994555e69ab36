"""Data-movement ops (PAD, TRANSPOSE: what litert-torch emits around the layers) are priced as bytes moved at the
core's copy rate (``chipfit.cost.model.COPY_CYCLES_PER_BYTE`` on microcontrollers, the bus rate elsewhere), and
no op of any search-space export is left unsupported on any target x runtime."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from chipfit.cost.model import COPY_CYCLES_PER_BYTE, CostModel
from chipfit.graph.opgraph import Node, OpClass, OpGraph, TensorInfo
from chipfit.targets import create_target, list_targets
from chipfit.targets.knowledge import core_types, runtimes


def _copy_graph() -> OpGraph:
    """NCHW -> NHWC transpose of a 1x3x32x32 input, then a 2-pixel pad: int8, 3,072 and 3,072 + 3,888 bytes."""
    t = {"x": TensorInfo((1, 3, 32, 32), "int8"), "y": TensorInfo((1, 32, 32, 3), "int8"),
         "z": TensorInfo((1, 36, 36, 3), "int8")}
    nodes = (Node("t", OpClass.TRANSPOSE, "TRANSPOSE", ("x",), ("y",)), Node("p", OpClass.PAD, "PAD", ("y",), ("z",)))
    return OpGraph("copies", nodes, t, ("x",), ("z",), source="tflite", layout="NHWC")


def test_copy_ops_are_bytes_moved_at_the_copy_rate() -> None:
    g = _copy_graph()
    target = create_target("alif-e7")  # Cortex-M55 at 400 MHz, analytical path (no CPI fit for the M55)
    cost = CostModel(auto_calibration=False).estimate(g, target, runtime="tflm-cmsis-nn")
    assert not cost.unsupported
    clock = target.clock_mhz * 1e6
    dispatch = runtimes()["tflm-cmsis-nn"].node_overhead_cycles / clock
    for layer, moved, op in zip(cost.layers, (3072 + 3072, 3072 + 3888), ("transpose", "pad"), strict=True):
        assert layer.bound == "copy"
        want = moved * COPY_CYCLES_PER_BYTE[op] / clock * cost.memory_factor + dispatch
        assert layer.latency_ms == pytest.approx(want * 1e3)
    # an application core: the bus rate (the board's bandwidth or the core's bytes per cycle)
    rpi = create_target("rpi4")
    cost = CostModel(auto_calibration=False).estimate(g, rpi, runtime="onnxruntime")
    rate = (rpi.mem_bandwidth_gbps * 1e9 if rpi.mem_bandwidth_gbps
            else core_types()[rpi.core].bytes_per_cycle * rpi.clock_mhz * 1e6)
    t = cost.layers[0]
    assert t.bound in ("copy", "overhead")
    assert t.latency_ms >= 6144 / rate * 1e3


def test_transpose_costs_more_per_byte_than_pad() -> None:
    """The measured rates: a byte gather (arm_transpose_s8) against row copies (arm_pad_s8)."""
    assert COPY_CYCLES_PER_BYTE["transpose"] > 4 * COPY_CYCLES_PER_BYTE["pad"]


SPECS = [{"modality": "image", "shape": [24, 24, 3]}, {"modality": "audio", "shape": [49, 10]},
         {"modality": "series", "shape": [64, 3]}]


@pytest.mark.slow
def test_every_search_space_export_is_priced_everywhere(tmp_path: Path) -> None:
    """One litert-torch int8 export per family of every space (and the series front-end on and off): on every
    registered target x runtime that runs int8, nothing is unsupported and every PAD/TRANSPOSE is a copy (where the
    analytical path prices it; the instruction path has its own fit)."""
    pytest.importorskip("litert_torch", reason="litert-torch is not installed (pip install 'chipfit[tflite]')")
    from chipfit.contract.schema import InputSpec
    from chipfit.export.tflite_export import convert_int8_tflite
    from chipfit.graph import from_tflite
    from chipfit.space import ArchConfig, create_space

    model = CostModel(auto_calibration=False)
    seen: set[str] = set()
    i = 0
    for spec in SPECS:
        space = create_space(InputSpec.model_validate(spec), 4)
        for fam, grid in space.families.items():
            variants = [{"spectral_bands": b} for b in grid["spectral_bands"]] if "spectral_bands" in grid else [{}]
            for extra in variants:
                rng = random.Random(300 + i)
                cfg = ArchConfig(fam, {**{k: rng.choice(v) for k, v in grid.items()}, **extra})
                shape = space.model_input_shape(cfg)
                calib = np.random.default_rng(i).standard_normal((2, *shape[1:])).astype(np.float32)
                g = from_tflite(convert_int8_tflite(space.build(cfg), shape, calib, tmp_path / f"{i}_{fam}.tflite"))
                i += 1
                seen |= {n.op_type for n in g.nodes}
                for name in list_targets():
                    target = create_target(name)
                    for rt in target.runtimes:
                        if rt not in runtimes() or "int8" not in runtimes()[rt].dtypes:
                            continue
                        cost = model.estimate(g, target, runtime=rt)
                        assert cost.unsupported == (), (fam, name, rt, cost.unsupported)
                        acc = runtimes()[rt].accelerators
                        if "instructions" in cost.predicted_by:  # the emulator's instruction fit prices them
                            continue
                        for layer in cost.layers:
                            if layer.op in COPY_CYCLES_PER_BYTE and not (acc and layer.unit != "cpu"):
                                assert layer.bound in ("copy", "overhead"), (fam, name, rt, layer)
    assert {"PAD", "TRANSPOSE"} <= seen  # the exporter does emit them
