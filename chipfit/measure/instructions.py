"""Regenerate ``chipfit/targets/knowledge/instructions.yaml``: the four MLPerf Tiny int8 reference models as
TFLM + CMSIS-NN firmware on each emulated Cortex-M core (QEMU, per-operator instruction counts), the per-class
instruction fit over those layers, and the cycles per instruction of every published CMSIS-NN board x stack
(see :mod:`chipfit.cost.instructions`).

    python -m chipfit.measure.instructions [--models DIR] [--out FILE] [--check]

Beside the reference models (exported by TensorFlow: AVERAGE_POOL_2D, wide layers) it measures five small
*probe* networks as chipfit's own exporter writes them (``chipfit/measure/data/probe_*.tflite``: narrow
layers, strided and residual convolutions, global pooling as MEAN, a dense stack), the layers a search
proposes; ``python scripts/instruction_probes.py`` rewrites them (litert-torch, seeded).

Needs the board farm (``make farm``: Arm GNU toolchain, QEMU, the TFLM tree) and the reference models
(``../shared/data/mlperf_tiny_models`` or ``CHIPFIT_SHARED_DATA``); with the firmware objects cached it
takes a few seconds. ``--check`` exits 1 when the shipped file differs from what the farm measures now.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from chipfit.cost.instructions import (
    KNOWLEDGE,
    CoreTable,
    Layer,
    cross_validate,
    fit_classes,
    fit_cpi,
    layers_of,
    to_dict,
)
from chipfit.errors import UsageError
from chipfit.logging import get_logger

_log = get_logger(__name__)

MODELS = {"kws": "kws/kws_ref_model.tflite", "ic": "ic/pretrainedResnet_quant.tflite",
          "vww": "vww/vww_96_int8.tflite", "ad": "ad/ad01_int8.tflite"}
CORES = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
SEED = 0  # the input every reference model is measured on (instruction counts barely depend on it)
PROBE_DIR = Path(__file__).resolve().parent / "data"
PROBES = ("probe_image", "probe_audio", "probe_residual", "probe_wide", "probe_dense")  # scripts/instruction_probes.py


def default_models_dir() -> Path:
    shared = os.environ.get("CHIPFIT_SHARED_DATA")
    root = Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared" / "data"
    return root / "mlperf_tiny_models"


def shipped_path() -> Path:
    return Path(__file__).resolve().parents[1] / "targets" / KNOWLEDGE


def measure_core(core: str, models_dir: Path) -> CoreTable:
    """Every operator of the reference models on the emulated ``core``: its layer record and instructions."""
    from chipfit.firmware.build import build_firmware
    from chipfit.firmware.cores import get_core
    from chipfit.firmware.run import run_qemu
    from chipfit.graph import from_tflite
    from chipfit.measure.modelfile import inspect_model
    from chipfit.measure.qemu import input_bytes

    layers: list[Layer] = []
    totals: dict[str, int] = {}
    models = {**{n: models_dir / rel for n, rel in MODELS.items()}, **{n: PROBE_DIR / f"{n}.tflite" for n in PROBES}}
    for name, path in models.items():
        rel = path.name
        if not path.is_file():
            raise UsageError(f"the MLPerf Tiny model {rel} under {models_dir}; not found. Give --models DIR (the "
                             "folder of scripts/fetch_data.py's mlperf_tiny_models) or set CHIPFIT_SHARED_DATA.")
        mf = inspect_model(path)
        run = run_qemu(build_firmware(path, core).elf, get_core(core), input_bytes(mf, mf.random_inputs(SEED)))
        graph = from_tflite(path)
        if len(run.ops) != len(graph.nodes):
            raise UsageError(f"{name} on {core}: the firmware profiled {len(run.ops)} operators, chipfit's graph "
                             f"has {len(graph.nodes)} nodes; expected one per node (report this as a bug).")
        for la, op in zip(layers_of(graph), run.ops, strict=True):
            layers.append(Layer(la.op, la.op_type, la.key, la.macs, la.im2col, la.out, la.inp, op.instructions, name))
        totals[name] = sum(op.instructions for op in run.ops)
        _log.info("%s on %s: %d instructions in %d operators", name, core, totals[name], len(run.ops))
    return CoreTable(core, tuple(layers), fit_classes(layers), totals)


def generate(models_dir: Path | None = None, cores: Sequence[str] = CORES) -> dict[str, Any]:
    """The knowledge file's content as measured now."""
    models_dir = models_dir or default_models_dir()
    return assemble({c: measure_core(c, models_dir) for c in cores})


def assemble(tables: dict[str, CoreTable]) -> dict[str, Any]:
    """The knowledge file's content from the cores' measured tables: the CPI of every published CMSIS-NN board
    x stack and the leave-one-network-out residuals, computed here from ``tables`` and the published rows."""
    from chipfit.firmware.toolchain import gcc_version
    from chipfit.targets.fit import read_rows

    rows, _ = read_rows()
    totals = {(c, b): float(n) for c, t in tables.items() for b, n in t.models.items()}
    cpi = fit_cpi(rows, totals)
    cv = cross_validate(rows, tables)
    firmware = (f"TFLM + CMSIS-NN at the commits TFLM pins, -O2, arm-none-eabi-gcc {gcc_version()}, QEMU -icount "
                f"shift=0; MLPerf Tiny int8 reference models, seeded random input {SEED}")
    return to_dict(tables, cpi, cv, firmware)


def render(content: dict[str, Any]) -> str:
    head = ("# Generated by `python -m chipfit.measure.instructions` (chipfit.cost.instructions): do not edit.\n"
            "# Per-operator instructions of the MLPerf Tiny int8 models on emulated Cortex-M cores, the per-class\n"
            "# instruction fit, and cycles per instruction of the published CMSIS-NN boards x stacks.\n")
    return head + yaml.safe_dump(content, sort_keys=False, width=120)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=None, help="folder of the MLPerf Tiny models")
    ap.add_argument("--out", type=Path, default=None, help="where to write (default: the shipped file)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the shipped file differs")
    a = ap.parse_args(argv)
    text = render(generate(a.models))
    out = a.out or shipped_path()
    if a.check:
        same = out.is_file() and out.read_text() == text
        sys.stderr.write(f"{out}: {'up to date' if same else 'differs from what the farm measures now'}\n")
        return 0 if same else 1
    out.write_text(text)
    sys.stderr.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
