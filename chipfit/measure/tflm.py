"""TFLite Micro as a runtime: the ``tflite-micro`` Python interpreter (TFLM's reference kernels, the same C++
an MCU runs; CMSIS-NN's optimized kernels are bit-exact with them) and TFLM's own arena accounting.

* :func:`check_ops` refuses a model with an op TFLM has no kernel for, naming the op and where it does run.
* :func:`measure_arena` runs a model and reads TFLM's ``RecordingMicroAllocator`` (``print_allocations``): the
  planned head, the persistent tail and their total, as allocated by the x86-64 wheel, plus the same arena on a
  32-bit Arm MCU: the measured figure with every struct's 64-bit size replaced by its 32-bit size
  (:data:`chipfit.cost.arena.ABIS`, read off the pinned TFLM headers, ``../shared/third_party/tflm``) and, for
  ``tflm-cmsis-nn``, CMSIS-NN's scratch buffers and op data instead of the reference kernels'.
* :func:`evaluate_tflite` runs a test split through TFLM and reports accuracy, predictions and agreement.
* :class:`TflmRuntime` / :class:`TflmCmsisNnRuntime` time inference (``chipfit measure --runtime tflm``).

>>> from chipfit.measure.tflm import BASELINE_TFLITE
>>> m = measure_arena(BASELINE_TFLITE)  # doctest: +SKIP
>>> m.planned, m.total_arm32 < m.total  # doctest: +SKIP
(32, True)
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from chipfit.cost.arena import TflmArena, tflm_arena
from chipfit.errors import MeasurementError
from chipfit.graph.tflite_reader import tflite_bytes
from chipfit.logging import get_logger
from chipfit.measure.base import Runtime
from chipfit.measure.modelfile import ModelFile

_log = get_logger(__name__)
TFLM_VERSION = "0.dev20261023182759"  # the tflm extra in pyproject.toml
BASELINE_TFLITE = Path(__file__).with_name("data") / "baseline.tflite"  # a 1x1 float ReLU (package data)

# Builtin ops with a TFLM kernel: the Add*() methods of MicroMutableOpResolver
# (tensorflow/lite/micro/micro_mutable_op_resolver.h of the pinned tree), custom signal ops left out.
TFLM_OPS = frozenset([
    "ABS", "ADD", "ADD_N", "ARG_MAX", "ARG_MIN", "ASSIGN_VARIABLE", "AVERAGE_POOL_2D", "BATCH_MATMUL",
    "BATCH_TO_SPACE_ND", "BROADCAST_ARGS", "BROADCAST_TO", "CALL_ONCE", "CAST", "CEIL", "CONCATENATION",
    "CONV_2D", "COS", "CUMSUM", "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV", "ELU",
    "EMBEDDING_LOOKUP", "EQUAL", "EXP", "EXPAND_DIMS", "FILL", "FLOOR", "FLOOR_DIV", "FLOOR_MOD",
    "FULLY_CONNECTED", "GATHER", "GATHER_ND", "GREATER", "GREATER_EQUAL", "HARD_SWISH", "IF", "L2_NORMALIZATION",
    "L2_POOL_2D", "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG", "LOG_SOFTMAX", "LOGICAL_AND", "LOGICAL_NOT",
    "LOGICAL_OR", "LOGISTIC", "MAX_POOL_2D", "MAXIMUM", "MEAN", "MINIMUM", "MIRROR_PAD", "MUL", "NEG",
    "NOT_EQUAL", "PACK", "PAD", "PADV2", "PRELU", "QUANTIZE", "READ_VARIABLE", "REDUCE_ALL", "REDUCE_MAX",
    "REDUCE_MIN", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "REVERSE_V2", "ROUND",
    "RSQRT", "SELECT_V2", "SHAPE", "SIN", "SLICE", "SOFTMAX", "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "SPLIT",
    "SPLIT_V", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SVDF", "TANH",
    "TRANSPOSE", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNPACK", "VAR_HANDLE", "WHILE", "ZEROS_LIKE"
])
# ops CMSIS-NN optimizes (kernels/cmsis_nn/ of the pinned tree); the others run TFLM's reference kernels
CMSIS_NN_OPS = frozenset([
    "ADD", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAXIMUM", "MINIMUM", "MUL", "PAD",
    "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX", "SVDF", "TRANSPOSE", "TRANSPOSE_CONV",
    "UNIDIRECTIONAL_SEQUENCE_LSTM"
])


def available() -> str | None:
    """``None`` when the ``tflite-micro`` interpreter imports, else why not."""
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except Exception as e:  # ImportError, or a wheel built for another platform
        return f"tflite-micro cannot be imported ({type(e).__name__}: {e}); pip install 'chipfit[tflm]'"
    return None


def _data(model: str | Path | bytes | ModelFile) -> tuple[bytes, str]:
    if isinstance(model, ModelFile):
        return model.data, model.name
    return tflite_bytes(model)


def model_ops(model: str | Path | bytes | ModelFile) -> list[str]:
    """The builtin op names of a ``.tflite``'s operators, in execution order."""
    import tflite

    from chipfit.graph.tflite_reader import _opname

    data, name = _data(model)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise MeasurementError(f"'{name}' is not a TFLite flatbuffer (expected 'TFL3' at byte 4); TFLM runs "
                               f".tflite files only.")
    m = tflite.Model.GetRootAsModel(data, 0)
    return [_opname(m, m.Subgraphs(s).Operators(k).OpcodeIndex())
            for s in range(m.SubgraphsLength()) for k in range(m.Subgraphs(s).OperatorsLength())]


def check_ops(model: str | Path | bytes | ModelFile) -> None:
    """Raise :class:`MeasurementError` naming every op TFLM has no kernel for, and where it does run.

    >>> check_ops(b"TFL")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    chipfit.errors.MeasurementError: 'model.tflite' is not a TFLite flatbuffer ...
    """
    data, name = _data(model)
    ops = model_ops(data)
    bad = sorted({o for o in ops if o not in TFLM_OPS})
    if bad:
        where = [i for i, o in enumerate(ops) if o in bad]
        raise MeasurementError(
            f"'{name}' uses {', '.join(bad)} (operator {', '.join(map(str, where[:5]))}), which TFLite Micro "
            f"has no kernel for (expected only ops of MicroMutableOpResolver). It runs on the 'litert' runtime "
            f"(LiteRT has every builtin op; ONNX Runtime runs the model's .onnx export). To deploy on an MCU, "
            f"change the architecture so that op is not emitted (e.g. a supported activation or pooling).")


def _capture_fd2(fn: Callable[[], Any]) -> str:
    """Run ``fn`` with file descriptor 2 redirected to a file (TFLM prints from C++) and return the text."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 2)
        try:
            fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        return f.read().decode(errors="replace")


def interpreter(model: str | Path | bytes | ModelFile, arena_size: int | None = None) -> Any:
    """A TFLM Python interpreter for ``model`` (ops checked first); errors become :class:`MeasurementError`."""
    why = available()
    if why:
        raise MeasurementError(why)
    from tflite_micro.python.tflite_micro import runtime

    data, name = _data(model)
    check_ops(data)
    size = int(arena_size or max(1 << 20, 8 * len(data)))
    try:
        return runtime.Interpreter.from_bytes(data, arena_size=size)
    except Exception as e:
        raise MeasurementError(f"TFLM cannot load '{name}' with a {size}-byte arena: "
                               f"{str(e).splitlines()[0][:300]}") from None


@dataclass(frozen=True)
class TflmArenaMeasurement:
    """TFLM's arena for one model. ``planned`` / ``persistent`` / ``total``: measured by TFLM's recording
    allocator in the x86-64 wheel (reference kernels). ``*_arm32``: the same for a 32-bit Arm MCU with
    ``kernels`` (measured, with each struct's x86-64 size swapped for its 32-bit one and, for CMSIS-NN, its
    scratch buffers and op data in place of the reference kernels'); ``required_arm32``: the arena to
    allocate there (planning needs temporary room, see :class:`chipfit.cost.arena.TflmArena`)."""

    model: str
    kernels: str
    planned: int
    persistent: int
    total: int
    categories: dict[str, int]
    planned_arm32: int
    persistent_arm32: int
    required_arm32: int
    method: str

    @property
    def total_arm32(self) -> int:
        return self.planned_arm32 + self.persistent_arm32

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_arm32": self.total_arm32}


def _n_inputs(data: bytes) -> int:
    import tflite

    return int(tflite.Model.GetRootAsModel(data, 0).Subgraphs(0).InputsLength())


def _run_once(it: Any, data: bytes) -> None:
    for i in range(_n_inputs(data)):
        d = it.get_input_details(i)
        it.set_input(np.zeros(tuple(d["shape"]), dtype=d["dtype"]), i)
    it.invoke()


def measure_arena(model: str | Path | bytes | ModelFile, *, kernels: str = "reference",
                  isa: str = "dsp") -> TflmArenaMeasurement:
    """Run ``model`` once through TFLM and read its arena (see :class:`TflmArenaMeasurement`); the 32-bit figures
    add CMSIS-NN's scratch buffers for the core's code path ``isa`` (:func:`chipfit.cost.arena.cmsis_isa`)."""
    data, name = _data(model)
    it = interpreter(data)
    _run_once(it, data)
    text = _capture_fd2(it.print_allocations)
    head = dict(re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text))
    if set(head) != {"total", "head", "tail"}:
        raise MeasurementError(f"TFLM's print_allocations gave no arena figures for '{name}' (expected 'Arena "
                               f"allocation total/head/tail N bytes' on stderr; got {text[:200]!r}).")
    cats = {k: int(v) for k, v in re.findall(r"'([^']+)' used (\d+) bytes", text)}
    h, t = int(head["head"]), int(head["tail"])
    sim64 = tflm_arena(data, abi="x86_64", kernels="reference", recording=True, name=name)
    sim32 = tflm_arena(data, abi="arm32", kernels=kernels, name=name, isa=isa)
    if sim64.planned != h:
        _log.warning("chipfit's plan of '%s' (%d bytes) differs from TFLM's (%d)", name, sim64.planned, h)
    planned32 = h + (sim32.planned - sim64.planned)  # CMSIS-NN adds scratch buffers to the plan
    persistent32 = t + (sim32.persistent - sim64.persistent)
    required32 = sim32.required + (planned32 + persistent32 - sim32.total)
    method = (f"TFLM {TFLM_VERSION} RecordingMicroAllocator (x86-64, reference kernels); 32-bit Arm "
              f"({kernels} kernels): measured tail with each struct's 64-bit size replaced by its 32-bit size "
              f"(chipfit.cost.arena.ABIS), plan re-run with {kernels} scratch buffers")
    return TflmArenaMeasurement(name, kernels, h, t, int(head["total"]), cats, planned32, persistent32, required32,
                                method)


@dataclass(frozen=True)
class TflmEvaluation:
    """A test split run through TFLM. ``agreement``: the share of predictions equal to ``reference`` (given,
    or LiteRT's on the same int8 inputs when it is installed; ``None`` otherwise)."""

    model: str
    n: int
    accuracy: float
    predictions: np.ndarray
    agreement: float | None
    agreement_with: str | None
    seconds: float

    @property
    def inferences_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if x.dtype == dtype:
        return x
    q = detail["quantization_parameters"]
    if np.issubdtype(dtype, np.integer) and len(q["scales"]):
        info = np.iinfo(dtype)
        xq = np.round(x / float(q["scales"][0])) + int(q["zero_points"][0])
        return np.clip(xq, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def evaluate_tflite(path: str | Path, x: np.ndarray, y: np.ndarray | None = None, *,
                    reference: np.ndarray | None = None) -> TflmEvaluation:
    """Run every sample of ``x`` (float, quantized here with the model's input scale and zero point, or already
    in the input dtype) through TFLM's interpreter one at a time, as an MCU does; predictions are the argmax of
    each output. ``accuracy`` against ``y`` (NaN without labels); ``agreement`` against ``reference``
    predictions, or LiteRT's when ``reference`` is None and ``ai-edge-litert`` is installed.

    >>> ev = evaluate_tflite("model.tflite", x_test, y_test)  # doctest: +SKIP
    >>> ev.accuracy, ev.agreement  # doctest: +SKIP
    (0.93, 1.0)
    """
    import time

    data, name = _data(path)
    it = interpreter(data)
    d_in, d_out = it.get_input_details(0), it.get_output_details(0)
    shape = tuple(int(s) for s in d_in["shape"])
    x = np.asarray(x)
    if x.size == 0 or x.size % int(np.prod(shape)) != 0:
        raise MeasurementError(f"evaluate_tflite('{name}'): x has shape {x.shape}; expected samples of "
                               f"{shape[1:]} (the model's input, batch {shape[0]}).")
    xs = _quantize(x.reshape((-1, *shape)), d_in)
    preds = np.empty(len(xs), dtype=np.int64)
    t0 = time.perf_counter()
    for i, s in enumerate(xs):
        it.set_input(s, 0)
        it.invoke()
        preds[i] = int(np.argmax(it.get_output(0).reshape(-1)))
    secs = time.perf_counter() - t0
    acc = float(np.mean(preds == np.asarray(y).reshape(-1))) if y is not None else float("nan")
    agree, with_ = None, None
    if reference is not None:
        agree, with_ = float(np.mean(preds == np.asarray(reference).reshape(-1))), "reference predictions"
    else:
        lite = _litert_predictions(data, xs)
        if lite is not None:
            agree, with_ = float(np.mean(preds == lite)), "LiteRT (same int8 inputs)"
    del d_out
    return TflmEvaluation(name, len(xs), acc, preds, agree, with_, secs)


def _litert_predictions(data: bytes, xs: np.ndarray) -> np.ndarray | None:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except Exception:
        return None
    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    out = np.empty(len(xs), dtype=np.int64)
    for i, s in enumerate(xs):
        it.set_tensor(d["index"], s.reshape(d["shape"]).astype(d["dtype"]))
        it.invoke()
        out[i] = int(np.argmax(it.get_tensor(o["index"]).reshape(-1)))
    return out


class TflmRuntime(Runtime):
    """TFLM's Python interpreter (reference kernels, single thread). Peak memory is TFLM's arena on a 32-bit
    Arm MCU (see :func:`measure_arena`)."""

    name: ClassVar[str] = "tflm"
    kinds: ClassVar[tuple[str, ...]] = ("tflite",)
    kernels: ClassVar[str] = "reference"

    def describe(self) -> str:
        return f"tflm {TFLM_VERSION} (reference kernels, x86-64; arena figures for 32-bit Arm, {self.kernels})"

    def check_kind(self, model: ModelFile) -> None:
        if model.kind != "tflite":
            raise MeasurementError(f"{self.name} runs .tflite files only ('{model.name}' is {model.kind}); use "
                                   f"the 'onnxruntime' runtime for it, or export a .tflite.")

    def open(self, model: ModelFile, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        self.check_kind(model)
        it = interpreter(model)
        for i, x in enumerate(inputs.values()):
            d = it.get_input_details(i)
            it.set_input(np.asarray(x, dtype=d["dtype"]).reshape(tuple(d["shape"])), i)
        it.invoke()
        return it.invoke

    def peak_memory(self, model: ModelFile) -> tuple[int, str] | None:
        m = measure_arena(model, kernels=self.kernels)
        return m.total_arm32, (f"TFLM arena on 32-bit Arm ({self.kernels}): planned {m.planned_arm32} + "
                               f"persistent {m.persistent_arm32} bytes; allocate {m.required_arm32}. {m.method}")

    def arena(self, model: str | Path | bytes | ModelFile) -> TflmArenaMeasurement:
        return measure_arena(model, kernels=self.kernels)


class TflmCmsisNnRuntime(TflmRuntime):
    """TFLM with CMSIS-NN kernels, measured through the reference interpreter: CMSIS-NN is bit-exact with the
    reference kernels, so outputs and timing order are those of TFLM; the arena adds CMSIS-NN's scratch
    buffers and op data for a DSP core (Cortex-M4, M7, M33)."""

    name: ClassVar[str] = "tflm-cmsis-nn"
    kernels: ClassVar[str] = "cmsis-nn"


@functools.cache
def predicted(path: str, kernels: str = "cmsis-nn") -> TflmArena:
    """chipfit's prediction of the 32-bit Arm arena for ``path`` (no interpreter needed)."""
    return tflm_arena(path, abi="arm32", kernels=kernels)
