"""Tensor-arena planning as TFLite Micro does it, and TFLM's whole arena (planned head + persistent tail).

Two levels:

* :func:`plan` is TFLM's ``GreedyMemoryPlanner`` (``tensorflow/lite/micro/memory_planner/
  greedy_memory_planner.cc`` of the pinned tree in ``../shared/third_party/tflm``): buffers are taken largest
  first (a stable sort of the *reversed* add order, so among equal sizes the last-added goes first, lines
  176-194), each placed at the lowest offset whose gap before the next simultaneously-alive buffer (in offset
  order) is large enough (first fit, lines 212-243). :func:`buffers` gives the buffers of an OpGraph: with
  ``tflm=True`` exactly as ``micro_allocation_info.cc`` and ``micro_allocator.cc`` do (graph inputs alive from
  step 0, op ``i`` at step ``i + 1``, graph outputs kept to the last step, every size rounded up to 16 bytes,
  ``MicroArenaBufferAlignment()`` in ``micro_arena_constants.h:24``; reshape gets its own buffer: TFLM
  copies, ``kernels/reshape.cc:44``), without it reshape-like ops alias their input (ONNX Runtime, LiteRT).
* :func:`tflm_arena` reads a ``.tflite`` and predicts every byte ``MicroInterpreter::AllocateTensors()``
  takes: the head (the plan, including kernel scratch buffers) and the tail (allocator objects, eval tensors,
  node structs, builtin params, kernel op data, per-channel multipliers and shifts, the input/output
  ``TfLiteTensor`` s), for the reference kernels or CMSIS-NN, on a 32-bit Arm MCU or on x86-64 (the
  ``tflite-micro`` Python interpreter, which checks the model: see ``tests/measure/test_tflm.py``).

>>> from chipfit.cost.arena import Buffer, plan
>>> p = plan([Buffer("a", 10, 0, 0), Buffer("b", 1, 0, 1), Buffer("c", 10, 1, 1)])
>>> p.lower_bound, p.arena
(11, 11)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chipfit.errors import GraphError
from chipfit.graph.opgraph import OpGraph
from chipfit.graph.tflite_reader import tflite_bytes

ALIGN = 16  # MicroArenaBufferAlignment(), tensorflow/lite/micro/micro_arena_constants.h:24
MAX_SCRATCH_PER_OP = 12  # kMaxScratchBuffersPerOp, tensorflow/lite/micro/micro_allocator.cc:54


def align_up(n: int, a: int = ALIGN) -> int:
    return -(-int(n) // a) * a


@dataclass(frozen=True)
class Buffer:
    """A tensor buffer alive from step ``first`` to step ``last`` (inclusive)."""

    name: str
    size: int
    first: int
    last: int


@dataclass(frozen=True)
class ArenaPlan:
    buffers: tuple[Buffer, ...]
    offsets: dict[str, int]
    lower_bound: int
    arena: int
    live_bytes: tuple[int, ...]  # total bytes alive at each step

    def to_dict(self) -> dict[str, object]:
        return {
            "lower_bound": self.lower_bound,
            "arena": self.arena,
            "buffers": [
                {"name": b.name, "size": b.size, "first": b.first, "last": b.last, "offset": self.offsets[b.name]}
                for b in self.buffers
            ],
        }


def buffers(graph: OpGraph, nbytes: Callable[[str], int], *, tflm: bool = False) -> list[Buffer]:
    """Buffers of ``graph``'s activation tensors, in the order a planner receives them.

    With ``tflm``: TFLM's lifetimes (``AllocationInfoBuilder::MarkAllocationLifetimes``,
    ``micro_allocation_info.cc``): graph inputs at step 0, op ``i`` creates its outputs and reads its inputs
    at step ``i + 1``, graph outputs last until the last op's step; sizes rounded up to 16; no aliasing; a
    tensor never used keeps the lifetime ``(-1, -1)`` as in TFLM. Without: reshape-like ops share their
    input's buffer and node ``i`` is step ``i``.
    """
    if tflm:
        n = len(graph.nodes)
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for t in graph.inputs:
            first.setdefault(t, 0)
            last[t] = 0
        for i, node in enumerate(graph.nodes, start=1):
            for t in node.outputs:
                first.setdefault(t, i)
            for t in (*node.inputs, *node.outputs):
                last[t] = i
        for t in graph.outputs:
            first.setdefault(t, n)
            last[t] = n
        out = []
        for t in graph.tensors:
            size = nbytes(t)
            if size:
                out.append(Buffer(t, align_up(size), first.get(t, -1), last.get(t, -1)))
        return out
    root: dict[str, str] = {}

    def find(t: str) -> str:
        while t in root:
            t = root[t]
        return t

    for node in graph.nodes:
        if node.op.is_alias and node.inputs:
            for o in node.outputs:
                root[o] = node.inputs[0]
    first = {}
    last = {}
    end = max(len(graph.nodes) - 1, 0)
    for t in graph.inputs:
        first[find(t)] = 0
        last[find(t)] = 0
    for i, node in enumerate(graph.nodes):
        for t in (*node.inputs, *node.outputs):
            r = find(t)
            first.setdefault(r, i)
            last[r] = max(last.get(r, i), i)
    for t in graph.outputs:
        last[find(t)] = end
    return [Buffer(r, nbytes(r), first[r], last[r]) for r in first]


def plan(bufs: Sequence[Buffer]) -> ArenaPlan:
    """Place ``bufs`` (in the order they were added) exactly as TFLM's ``GreedyMemoryPlanner`` does, and
    compute the lifetime lower bound (the most bytes alive at one step)."""
    steps = max((b.last for b in bufs), default=-1) + 1
    live = [0] * max(steps, 0)
    for b in bufs:
        for s in range(max(b.first, 0), b.last + 1):
            live[s] += b.size
    # CalculateOffsetsIfNeeded: online buffers fill the sorted arrays from the tail (reversed add order), then a
    # stable bubble sort by size, descending (greedy_memory_planner.cc:176-194)
    order = sorted(reversed(range(len(bufs))), key=lambda i: -bufs[i].size)
    placed_offsets: list[int] = []  # entries in offset order (ties: later-placed after earlier, lines 254-276)
    placed: list[int] = []
    offsets: dict[str, int] = {}
    for i in order:
        b = bufs[i]
        cand = 0
        for off, j in zip(placed_offsets, placed, strict=True):
            p = bufs[j]
            if p.first > b.last or b.first > p.last:
                continue
            if off - cand >= b.size:
                break
            cand = max(cand, off + p.size)
        k = bisect.bisect_right(placed_offsets, cand)
        placed_offsets.insert(k, cand)
        placed.insert(k, i)
        offsets[b.name] = cand
    arena = max((off + bufs[j].size for off, j in zip(placed_offsets, placed, strict=True)), default=0)
    return ArenaPlan(tuple(bufs), offsets, max(live, default=0), arena, tuple(live))


# ---------------------------------------------------------------------------------------------------------------
# TFLM's whole arena, from a .tflite


@dataclass(frozen=True)
class Abi:
    """Sizes and alignments (bytes) of the structs TFLM puts in its arena on one ABI.

    ``arm32``: a 32-bit Arm MCU (AAPCS as ``arm-none-eabi-gcc`` builds it: 4-byte pointers, 8-byte aligned
    64-bit types, short enums, the default for AAPCS targets other than Linux: gcc ``config/arm/arm.h``
    ``ARM_DEFAULT_SHORT_ENUMS``). ``x86_64``: the ``tflite-micro`` Python wheel. Both were read off the pinned
    headers by compiling ``bench/tflm_struct_sizes.cc`` (``g++ -std=c++17 -DTF_LITE_STATIC_MEMORY``, plus
    ``-m32 -malign-double -fshort-enums`` for ``arm32``); the x86-64 figures are checked against TFLM's own
    recording allocator in ``tests/measure/test_tflm.py``.
    """

    name: str
    ptr: int
    sizes: dict[str, tuple[int, int]] = field(repr=False)

    def size(self, what: str) -> int:
        return self.sizes[what][0]

    def align(self, what: str) -> int:
        return self.sizes[what][1]


# name: (x86-64 size, align, arm32 size, align), with where it is defined in ../shared/third_party/tflm
_STRUCTS: dict[str, tuple[int, int, int, int, str]] = {
    "TfLiteEvalTensor": (24, 8, 12, 4, "tensorflow/lite/core/c/common.h:753"),
    "TfLiteTensor": (64, 8, 32, 4, "tensorflow/lite/core/c/common.h:678 (TF_LITE_STATIC_MEMORY)"),
    "NodeAndRegistration": (64, 8, 32, 4, "tensorflow/lite/micro/micro_allocator.h:82 (TfLiteNode: common.h:723)"),
    "ScratchBufferHandle": (8, 8, 4, 4, "tensorflow/lite/micro/micro_allocator.h:90"),
    "SubgraphAllocations": (16, 8, 8, 4, "tensorflow/lite/micro/micro_allocator.h:97"),
    "TfLiteAffineQuantization": (24, 8, 12, 4, "tensorflow/lite/core/c/common.h:380"),
    "TfLiteIntArray": (4, 4, 4, 4, "tensorflow/lite/core/c/common.h:112"),
    "SingleArenaBufferAllocator": (72, 8, 36, 4,
                                   "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h:31"),
    "RecordingSingleArenaBufferAllocator": (104, 8, 52, 4, "tensorflow/lite/micro/arena_allocator/"
                                            "recording_single_arena_buffer_allocator.h"),
    "GreedyMemoryPlanner": (72, 8, 44, 4, "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h:46"),
    "MicroAllocator": (72, 8, 36, 4, "tensorflow/lite/micro/micro_allocator.h"),
    "RecordingMicroAllocator": (248, 8, 124, 4, "tensorflow/lite/micro/recording_micro_allocator.h"),
    # a vtable pointer and one pointer (micro_allocator.cc:62); not in the header, so counted by hand
    "MicroBuiltinDataAllocator": (16, 8, 8, 4, "tensorflow/lite/micro/micro_allocator.cc:62"),
    "ScratchBufferRequest": (16, 8, 12, 4, "tensorflow/lite/micro/micro_allocator.h:62"),
    "AllocationInfo": (32, 8, 20, 4, "tensorflow/lite/micro/micro_allocation_info.h:27"),
    # kernel op data (Init allocations): reference kernels
    "OpDataConv": (72, 8, 56, 4, "tensorflow/lite/micro/kernels/conv.h:27"),
    "OpDataFullyConnected": (64, 8, 48, 4, "tensorflow/lite/micro/kernels/fully_connected.h:26"),
    "OpDataPooling": (32, 4, 32, 4, "tensorflow/lite/micro/kernels/pooling.h:37"),
    "OpDataAdd": (60, 4, 60, 4, "tensorflow/lite/micro/kernels/add.h:31"),
    "OpDataMul": (36, 4, 36, 4, "tensorflow/lite/micro/kernels/mul.h"),
    "OpDataSub": (52, 4, 52, 4, "tensorflow/lite/micro/kernels/sub.h"),
    "SoftmaxParams": (80, 8, 56, 8, "tensorflow/lite/kernels/internal/types.h:968"),
    "OpDataReduce": (44, 4, 44, 4, "tensorflow/lite/micro/kernels/reduce.h:27"),
    "PadOpData": (56, 4, 56, 4, "tensorflow/lite/micro/kernels/pad.h:24"),
    "OpDataLogistic": (16, 4, 16, 4, "tensorflow/lite/micro/kernels/logistic.h"),
    "HardSwishParams": (20, 4, 20, 4, "tensorflow/lite/micro/kernels/hard_swish.h"),
    "ReluOpData": (28, 4, 28, 4, "tensorflow/lite/micro/kernels/activations.h"),
    "Relu6OpData": (8, 4, 8, 4, "tensorflow/lite/micro/kernels/activations.h"),
    "OpDataQuantizeReference": (32, 8, 32, 8, "tensorflow/lite/micro/kernels/quantize.h"),
    "DequantizeOpData": (32, 8, 32, 8, "tensorflow/lite/micro/kernels/dequantize.h"),
    "StridedSliceParams": (84, 4, 84, 4, "tensorflow/lite/micro/kernels/strided_slice.h"),
    "LeakyReluOpData": (24, 4, 24, 4, "tensorflow/lite/micro/kernels/leaky_relu.h"),
    # CMSIS-NN kernels' op data (anonymous structs in kernels/cmsis_nn/*.cc)
    "CmsisConv": (80, 8, 60, 4, "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc:33"),
    "CmsisFullyConnected": (96, 8, 72, 4, "tensorflow/lite/micro/kernels/cmsis_nn/fully_connected.cc:35"),
    "CmsisPooling": (36, 4, 36, 4, "tensorflow/lite/micro/kernels/cmsis_nn/pooling.cc:30"),
    "CmsisAdd": (64, 4, 64, 4, "tensorflow/lite/micro/kernels/cmsis_nn/add.cc:37"),
    "CmsisSoftmax": (88, 8, 64, 8, "tensorflow/lite/micro/kernels/cmsis_nn/softmax.cc:32"),
    # builtin params (flatbuffer_conversions.cc parsers, allocated in the tail with their own alignment)
    "TfLiteConvParams": (28, 4, 28, 4, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteDepthwiseConvParams": (28, 4, 28, 4, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteFullyConnectedParams": (16, 4, 5, 1, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLitePoolParams": (40, 4, 40, 4, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteAddParams": (8, 4, 2, 1, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteSubParams": (8, 4, 2, 1, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteMulParams": (4, 4, 1, 1, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteSoftmaxParams": (4, 4, 4, 4, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteReshapeParams": (36, 4, 36, 4, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteReducerParams": (1, 1, 1, 1, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteConcatenationParams": (8, 4, 8, 4, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteStridedSliceParams": (24, 4, 24, 4, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteSqueezeParams": (36, 4, 36, 4, "tensorflow/lite/core/c/builtin_op_data.h"),
    "TfLiteLeakyReluParams": (4, 4, 4, 4, "tensorflow/lite/core/c/builtin_op_data.h"),
}

# The tflite-micro wheel (0.dev20261023182759) is newer than the pinned tree: its fully-connected op data and
# params are larger. Found by fitting the wheel's recorded allocations (10 FULLY_CONNECTED ops of MLPerf Tiny ad:
# 'Persistent buffer data' 72 bytes requested per op; 16 more unrecorded tail bytes per op).
_WHEEL = {"OpDataFullyConnected": (72, 8), "TfLiteFullyConnectedParams": (32, 4)}
# tail bytes the Python interpreter takes that no recorded category and no struct above explain (constant over
# the 4 MLPerf Tiny models and chipfit's exports)
PYTHON_UNATTRIBUTED = 32

ABIS: dict[str, Abi] = {
    "x86_64": Abi("x86_64", 8, {**{k: (v[0], v[1]) for k, v in _STRUCTS.items()}, **_WHEEL}),
    "arm32": Abi("arm32", 4, {k: (v[2], v[3]) for k, v in _STRUCTS.items()}),
}

# builtin params each op's parser allocates (core/api/flatbuffer_conversions.cc; PAD, TRANSPOSE, QUANTIZE, ... none)
_PARAMS = {"CONV_2D": "TfLiteConvParams", "DEPTHWISE_CONV_2D": "TfLiteDepthwiseConvParams",
           "FULLY_CONNECTED": "TfLiteFullyConnectedParams", "AVERAGE_POOL_2D": "TfLitePoolParams",
           "MAX_POOL_2D": "TfLitePoolParams", "ADD": "TfLiteAddParams", "SUB": "TfLiteSubParams",
           "MUL": "TfLiteMulParams", "SOFTMAX": "TfLiteSoftmaxParams", "RESHAPE": "TfLiteReshapeParams",
           "MEAN": "TfLiteReducerParams", "SUM": "TfLiteReducerParams", "REDUCE_MAX": "TfLiteReducerParams",
           "CONCATENATION": "TfLiteConcatenationParams", "STRIDED_SLICE": "TfLiteStridedSliceParams",
           "SQUEEZE": "TfLiteSqueezeParams", "LEAKY_RELU": "TfLiteLeakyReluParams"}
# op data each kernel's Init allocates (16-aligned, through MicroInterpreterContext::AllocatePersistentBuffer)
_OPDATA = {
    "reference": {"CONV_2D": "OpDataConv", "DEPTHWISE_CONV_2D": "OpDataConv",
                  "FULLY_CONNECTED": "OpDataFullyConnected", "AVERAGE_POOL_2D": "OpDataPooling",
                  "MAX_POOL_2D": "OpDataPooling", "ADD": "OpDataAdd", "SOFTMAX": "SoftmaxParams"},
    "cmsis-nn": {"CONV_2D": "CmsisConv", "DEPTHWISE_CONV_2D": "CmsisConv",
                 "FULLY_CONNECTED": "CmsisFullyConnected", "AVERAGE_POOL_2D": "CmsisPooling",
                 "MAX_POOL_2D": "CmsisPooling", "ADD": "CmsisAdd", "SOFTMAX": "CmsisSoftmax"},
}
_OPDATA_COMMON = {"MUL": "OpDataMul", "SUB": "OpDataSub", "MEAN": "OpDataReduce", "SUM": "OpDataReduce",
                  "REDUCE_MAX": "OpDataReduce", "PAD": "PadOpData", "PADV2": "PadOpData",
                  "LOGISTIC": "OpDataLogistic", "HARD_SWISH": "HardSwishParams", "RELU": "ReluOpData",
                  "RELU6": "Relu6OpData", "QUANTIZE": "OpDataQuantizeReference", "DEQUANTIZE": "DequantizeOpData",
                  "STRIDED_SLICE": "StridedSliceParams", "LEAKY_RELU": "LeakyReluOpData"}
KERNELS = ("reference", "cmsis-nn")
# bytes per element of tflite TensorType codes (schema.fbs): FLOAT32, FLOAT16, INT32, UINT8, INT64, STRING, BOOL,
# INT16, COMPLEX64, INT8, FLOAT64, ..., UINT16 (16)
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 12: 8, 16: 2}


@dataclass(frozen=True)
class TflmArena:
    """TFLM's arena for one model: ``planned`` (head: tensors and kernel scratch buffers, as planned),
    ``persistent`` (tail), ``total`` = their sum (what ``arena_used_bytes()`` reports), and ``required``: the
    smallest arena ``AllocateTensors()`` succeeds in (planning needs temporary room the final head may not
    keep), rounded up to 16. ``items`` break the tail down."""

    model: str
    abi: str
    kernels: str
    planned: int
    persistent: int
    required: int
    scratch: int
    items: tuple[tuple[str, int], ...]
    plan: ArenaPlan = field(repr=False, compare=False)
    isa: str | None = None  # CMSIS-NN's code path (cmsis_isa); None for the reference kernels

    @property
    def total(self) -> int:
        return self.planned + self.persistent

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "abi": self.abi, "kernels": self.kernels, "isa": self.isa,
                "planned": self.planned,
                "persistent": self.persistent, "total": self.total, "required": self.required,
                "scratch": self.scratch, "items": dict(self.items)}


class _Tail:
    """The tail grows down from a 16-aligned arena end: each allocation is ``AlignPointerDown(tail - size,
    alignment)`` (``single_arena_buffer_allocator.cc``), so its cost depends on what came before."""

    def __init__(self) -> None:
        self.used = 0
        self.items: dict[str, int] = {}

    def alloc(self, what: str, size: int, align: int) -> None:
        before = self.used
        self.used = align_up(self.used + size, align)
        self.items[what] = self.items.get(what, 0) + self.used - before


def _same_pad(in_size: int, k: int, stride: int, dilation: int, out_size: int) -> int:
    eff = (k - 1) * dilation + 1
    return max((out_size - 1) * stride + eff - in_size, 0) // 2


# ---------------------------------------------------------------------------------------------------------------
# CMSIS-NN scratch buffers per instruction set. CMSIS-NN compiles one of three code paths from the core's feature
# macros (third_party/cmsis_nn/Include/arm_nn_math_types.h: __ARM_FEATURE_MVE -> ARM_MATH_MVEI, __ARM_FEATURE_DSP
# -> ARM_MATH_DSP), and each path asks TFLM for different scratch buffers. The rules below are read by hand from
# the pinned tree (../shared/third_party/tflm/third_party/cmsis_nn/Source/*/arm_*_get_buffer_sizes_s8.c) and from
# how TFLM's kernels call them (tensorflow/lite/micro/kernels/cmsis_nn/*.cc, Prepare), for a GCC build (the
# __ARMCC_VERSION branches are Arm Compiler 6 only). Sizes are bytes; 0 means no request.

ISAS = ("mve", "dsp", "none")  # Helium (M55, M85); DSP extension (M4, M7, M33); neither (M0, M0+, M3, M23)
# cores the knowledge base (targets/knowledge/cores.yaml) does not describe: Armv6-M / Armv7-M / Armv8-M baseline
# cores without the DSP extension, and the Armv8.1-M cores with Helium
_ISA_FALLBACK = {"cortex-m0": "none", "cortex-m0plus": "none", "cortex-m1": "none", "cortex-m3": "none",
                 "cortex-m23": "none", "cortex-m35p": "dsp", "cortex-m52": "mve"}
# CONVERT_DW_CONV_WITH_ONE_INPUT_CH_AND_OUTPUT_CH_ABOVE_THRESHOLD with GCC (arm_nnsupportfunctions.h:83-87)
_DW_ONE_IN_CH_THRESHOLD = 1
CH_IN_BLOCK_MVE = 124  # arm_nnsupportfunctions.h:65


def cmsis_isa(core: str) -> str:
    """Which CMSIS-NN code path a core compiles: ``mve`` (Helium), ``dsp`` or ``none`` (plain C).

    >>> cmsis_isa("cortex-m55"), cmsis_isa("cortex-m4"), cmsis_isa("cortex-m3")
    ('mve', 'dsp', 'none')
    """
    from chipfit.targets.knowledge import core_types

    name = core.lower().strip()
    name = name if name.startswith("cortex-") else f"cortex-{name}"
    ct = core_types().get(name)
    if ct is not None and ct.family == "mcu":
        return "mve" if ct.mve else "dsp" if ct.dsp else "none"
    if name in _ISA_FALLBACK:
        return _ISA_FALLBACK[name]
    known = sorted({*_ISA_FALLBACK, *(k for k, v in core_types().items() if v.family == "mcu")})
    raise GraphError(f"no CMSIS-NN code path known for core '{core}': expected a Cortex-M core "
                     f"({', '.join(known)}).")


def _check_isa(isa: str) -> None:
    if isa not in ISAS:
        raise GraphError(f"unknown CMSIS-NN instruction set '{isa}': expected one of {', '.join(ISAS)}.")


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _cmod(a: int, b: int) -> int:
    """C remainder (takes the dividend's sign)."""
    return a - _cdiv(a, b) * b


def _conv_s8_im2col(isa: str, ic: int, kh: int, kw: int) -> int:
    """``arm_convolve_s8_get_buffer_size`` (arm_convolve_get_buffer_sizes_s8.c): MVE, four im2col columns of
    whole 16-byte lanes (``arm_convolve_s8_get_buffer_size_mve``); otherwise two int16 columns of the 4-aligned
    column length."""
    cols = ic * kw * kh
    if isa == "mve":
        return 4 * ((cols + 15) // 16) * 16
    return 2 * align_up(cols, 4) * 2


def _conv_s8_1xn_mve(ic: int, iw: int, kw: int, ow: int, stride_w: int, pad_w: int) -> int:
    """``arm_convolve_1_x_n_s8_get_buffer_size_mve`` (arm_convolve_get_buffer_sizes_s8.c), in C arithmetic."""
    total_pad = (ow - 1) * stride_w + kw - iw
    asym = _cmod(total_pad, 2)
    right = max(1, _cdiv(pad_w + asym + stride_w - 1, stride_w)) if pad_w + asym != 0 else 0
    left = max(1, _cdiv(pad_w + stride_w - 1, stride_w)) if pad_w != 0 else 0
    if right + max(ow - (right + left), 0) + left != ow:
        return _conv_s8_im2col("mve", ic, 1, kw)
    pad_left = pad_w * ic
    pad_right = right * ic if asym else pad_left
    n_left = kw * ic
    return max(n_left + pad_left, n_left - ic + pad_right)


def conv_s8_scratch(isa: str, *, in_hwc: tuple[int, int, int], filter_hwc: tuple[int, int, int],
                    out_hw: tuple[int, int], stride: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1),
                    padding: tuple[int, int] = (0, 0)) -> int:
    """Scratch bytes TFLM's CMSIS-NN ``CONV_2D`` (int8) requests: ``arm_convolve_wrapper_s8_get_buffer_size``
    as ``kernels/cmsis_nn/conv.cc`` Prepare calls it (padding = TFLM's computed ``padding.height/width``).
    ``filter_hwc``: kernel height, width and input channels per group.

    * MVE (``arm_convolve_wrapper_s8_get_buffer_size_mve``): 1x1 -> 0 (``arm_convolve_1x1_s8_fast_get_buffer_size``
      is 0 under ARM_MATH_MVEI); 1xN (``arm_nn_is_convolve_1_x_n``) -> ``arm_convolve_1_x_n_s8_get_buffer_size_mve``;
      else ``arm_convolve_s8_get_buffer_size_mve``.
    * DSP (``..._dsp``) and plain C: 1x1 -> 0 (the DSP 1x1-fast size is 0 with GCC); 1xN and the rest ->
      ``arm_convolve_s8_get_buffer_size``.

    >>> conv_s8_scratch("dsp", in_hwc=(49, 10, 1), filter_hwc=(10, 4, 1), out_hw=(25, 5), stride=(2, 2))
    160
    >>> conv_s8_scratch("mve", in_hwc=(49, 10, 1), filter_hwc=(10, 4, 1), out_hw=(25, 5), stride=(2, 2))
    192
    """
    _check_isa(isa)
    ih, iw, ic = in_hwc
    kh, kw, fc = filter_hwc
    _, ow = out_hw
    sw, (dh, dw), (ph, pw) = stride[1], dilation, padding
    if ph == 0 and pw == 0 and kh == 1 and kw == 1 and dh == 1 and dw == 1 and ic == fc:  # arm_nn_is_convolve_1x1
        return 0
    if isa == "mve" and ih == 1 and dw == 1 and kh == 1 and (sw * ic) % 4 == 0 and ic == fc:
        return _conv_s8_1xn_mve(ic, iw, kw, ow, sw, pw)
    return _conv_s8_im2col(isa, ic, kh, kw)


def depthwise_s8_scratch(isa: str, *, in_hwc: tuple[int, int, int], kernel_hw: tuple[int, int], out_c: int,
                         out_w: int, batch: int = 1, stride: tuple[int, int] = (1, 1),
                         dilation: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)) -> int:
    """Scratch bytes TFLM's CMSIS-NN ``DEPTHWISE_CONV_2D`` (int8) requests:
    ``arm_depthwise_conv_wrapper_s8_get_buffer_size`` (arm_depthwise_conv_get_buffer_sizes_s8.c) as
    ``kernels/cmsis_nn/depthwise_conv.cc`` Prepare calls it.

    * MVE: one input channel and more than one output channel (the GCC threshold) -> the depthwise runs as a
      regular convolution: ``arm_deptwise_conv_s8_one_in_ch_get_buffer_size_mve`` = the MVE convolution's buffer
      for filter (out_c, kh, kw, 1) plus out_c x kh x kw bytes of reordered weights. (TFLM's Prepare leaves the
      stride of ``dw_conv_params`` unset there, ``depthwise_conv.cc:169-173``; the op's stride is taken.) Else,
      channels in = out, batch 1, no dilation -> ``arm_depthwise_conv_s8_opt_get_buffer_size_mve``:
      4 x CH_IN_BLOCK_MVE (124) x kh x kw, for every kernel size (the 3x3 exception is compiled out under
      ARM_MATH_MVEI).
    * DSP: channels in = out, batch 1, no dilation: 3x3 with padding <= 1 -> 0 (``arm_depthwise_conv_3x3_s8``),
      else ``arm_depthwise_conv_s8_opt_get_buffer_size_dsp`` = in_c x kh x kw int16.
    * plain C: 0 (``arm_depthwise_conv_s8_opt_get_buffer_size`` without DSP or MVE).

    >>> depthwise_s8_scratch("mve", in_hwc=(25, 5, 64), kernel_hw=(3, 3), out_c=64, out_w=5, padding=(1, 1))
    4464
    >>> depthwise_s8_scratch("dsp", in_hwc=(25, 5, 64), kernel_hw=(3, 3), out_c=64, out_w=5, padding=(1, 1))
    0
    """
    _check_isa(isa)
    ic = in_hwc[2]
    kh, kw = kernel_hw
    if isa == "mve" and ic == 1 and out_c > _DW_ONE_IN_CH_THRESHOLD:
        conv = conv_s8_scratch("mve", in_hwc=in_hwc, filter_hwc=(kh, kw, 1), out_hw=(0, out_w), stride=stride,
                               dilation=dilation, padding=padding)
        return conv + out_c * kh * kw
    if ic == out_c and batch == 1 and dilation == (1, 1):
        if isa == "mve":
            return 4 * CH_IN_BLOCK_MVE * kw * kh
        if isa == "dsp":
            return 0 if kh == 3 and kw == 3 and padding[0] <= 1 and padding[1] <= 1 else ic * kw * kh * 2
    return 0


def fully_connected_s8_scratch(isa: str, *, accum_depth: int, out_depth: int, out_rank: int = 2,
                               per_channel: bool = False) -> list[int]:
    """Scratch requests of TFLM's CMSIS-NN ``FULLY_CONNECTED`` (int8 input and weights), in request order
    (``kernels/cmsis_nn/fully_connected.cc`` Prepare): an output of rank > 2 with the accumulation depth a
    multiple of 4 runs as a 1x1 convolution (per-tensor weights: out_depth x 2 int32 of faked per-channel
    parameters; the 1x1-fast buffer is 0 with GCC and under MVE); otherwise ``arm_fully_connected_s8_get_buffer_size``:
    out_depth int32 kernel sums under MVE (``..._mve``), 0 otherwise. The firmware is built without
    ``KERNELS_OPTIMIZED_FOR_SPEED``; with it (TFLM's Makefile default) the MVE kernel sums move from the plan to
    the persistent tail (same size).

    >>> fully_connected_s8_scratch("mve", accum_depth=640, out_depth=128)
    [512]
    >>> fully_connected_s8_scratch("dsp", accum_depth=640, out_depth=128)
    []
    """
    _check_isa(isa)
    if out_rank > 2 and accum_depth % 4 == 0:
        return [] if per_channel else [out_depth * 8]
    return [out_depth * 4] if isa == "mve" else []


def avgpool_s8_scratch(isa: str, channels: int) -> int:
    """``arm_avgpool_s8_get_buffer_size`` (arm_avgpool_get_buffer_sizes_s8.c), as ``kernels/cmsis_nn/pooling.cc``
    AveragePrepare asks for it: DSP, one int32 per channel; MVE and plain C, none.

    >>> avgpool_s8_scratch("dsp", 64), avgpool_s8_scratch("mve", 64)
    (256, 0)
    """
    _check_isa(isa)
    return channels * 4 if isa == "dsp" else 0


def svdf_s8_scratch(isa: str, *, batch: int, num_filters: int, num_units: int) -> list[int]:
    """Scratch requests of TFLM's CMSIS-NN ``SVDF`` (int8), ``kernels/cmsis_nn/svdf.cc`` Prepare: batch x
    num_filters int32 and batch x num_units int32; then ``arm_svdf_s8_get_buffer_size``
    (arm_svdf_get_buffer_sizes_s8.c): num_filters int32 kernel sums under MVE, 0 otherwise. Under MVE TFLM
    needs ``KERNELS_OPTIMIZED_FOR_SPEED`` (kernel sums in the persistent tail, not returned here) or
    ``..._FOR_SIZE`` (a third scratch request, returned here); with neither, Prepare fails.

    >>> svdf_s8_scratch("mve", batch=1, num_filters=64, num_units=16)
    [256, 64, 256]
    >>> svdf_s8_scratch("dsp", batch=1, num_filters=64, num_units=16)
    [256, 64]
    """
    _check_isa(isa)
    out = [batch * num_filters * 4, batch * num_units * 4]
    return out + ([num_filters * 4] if isa == "mve" else [])


def lstm_scratch(*, batch: int, state_dim: int, cell_bytes: int = 2, int_kernels: bool = True) -> list[int]:
    """Scratch requests of TFLM's CMSIS-NN ``UNIDIRECTIONAL_SEQUENCE_LSTM``
    (``kernels/cmsis_nn/unidirectional_sequence_lstm.cc`` Prepare): 3 buffers (int8 or int16 activations with an
    int16 cell state, the CMSIS-NN path) or 4 (float), each batch x state_dim cell-state elements. The same on every
    instruction set: CMSIS-NN's LSTM keeps its kernel sums in the persistent tail on all of them.

    >>> lstm_scratch(batch=1, state_dim=20)
    [40, 40, 40]
    """
    return [batch * state_dim * cell_bytes] * (3 if int_kernels else 4)


def _cmsis_scratch(op: str, opts: Any, ins: list[Any], outs: list[Any], per_channel: bool,
                   isa: str = "dsp") -> list[int]:
    """CMSIS-NN scratch requests of one int8 op of a ``.tflite`` on a core with the ``isa`` code path, in request
    order (the rules: :func:`conv_s8_scratch`, :func:`depthwise_s8_scratch`, :func:`fully_connected_s8_scratch`,
    :func:`avgpool_s8_scratch`, :func:`svdf_s8_scratch`)."""
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D") and ins[0].type == 9:
        n, ih, iw, ic = ins[0].shape
        _, kh, kw, fc = ins[1].shape
        _, oh, ow, oc = outs[0].shape
        stride, dil = (opts["stride_h"], opts["stride_w"]), (opts["dil_h"], opts["dil_w"])
        pad = ((_same_pad(ih, kh, stride[0], dil[0], oh), _same_pad(iw, kw, stride[1], dil[1], ow))
               if opts["padding"] == 0 else (0, 0))
        if op == "CONV_2D":
            b = conv_s8_scratch(isa, in_hwc=(ih, iw, ic), filter_hwc=(kh, kw, fc), out_hw=(oh, ow), stride=stride,
                                dilation=dil, padding=pad)
        else:
            b = depthwise_s8_scratch(isa, in_hwc=(ih, iw, ic), kernel_hw=(kh, kw), out_c=oc, out_w=ow, batch=n,
                                     stride=stride, dilation=dil, padding=pad)
        return [b]
    if op == "AVERAGE_POOL_2D" and ins[0].type == 9:
        return [avgpool_s8_scratch(isa, outs[0].shape[-1])]
    if op == "FULLY_CONNECTED" and ins[0].type == 9 and ins[1].type == 9:
        return fully_connected_s8_scratch(isa, accum_depth=ins[1].shape[-1], out_depth=outs[0].shape[-1],
                                          out_rank=len(outs[0].shape), per_channel=per_channel)
    if op == "SVDF" and ins[0].type == 9:
        num_filters = ins[1].shape[0]
        return svdf_s8_scratch(isa, batch=ins[0].shape[0], num_filters=num_filters,
                               num_units=num_filters // max(opts.get("rank", 1), 1))
    return []


@dataclass
class _T:
    shape: tuple[int, ...]
    type: int
    const: bool
    variable: bool
    channels: int  # quantization scales
    quantized: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _TYPE_BYTES.get(self.type, 1)


def _read(data: bytes, label: str) -> tuple[list[_T], list[tuple[str, list[int], list[int], dict[str, int]]],
                                                list[int], list[int], int]:
    import tflite

    from chipfit.graph.tflite_reader import _opname

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise GraphError(f"'{label}' is not a TFLite flatbuffer (expected the 'TFL3' identifier at byte 4).")
    m = tflite.Model.GetRootAsModel(data, 0)
    if m.SubgraphsLength() < 1:
        raise GraphError(f"TFLite model '{label}' has no subgraph.")
    sg = m.Subgraphs(0)
    tensors = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        b = m.Buffers(t.Buffer()) if t.Buffer() < m.BuffersLength() else None
        q = t.Quantization()
        ch = q.ScaleLength() if q is not None else 0
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        tensors.append(_T(shape, t.Type(), b is not None and (b.DataLength() > 0 or b.Size() > 0),
                          bool(t.IsVariable()), ch, ch > 0))
    ops = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        name = _opname(m, op.OpcodeIndex())
        ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
        opts: dict[str, int] = {}
        o = op.BuiltinOptions()
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and o is not None:
            cls = tflite.Conv2DOptions if name == "CONV_2D" else tflite.DepthwiseConv2DOptions
            x = cls()
            x.Init(o.Bytes, o.Pos)
            opts = {"padding": x.Padding(), "stride_h": x.StrideH(), "stride_w": x.StrideW(),
                    "dil_h": x.DilationHFactor(), "dil_w": x.DilationWFactor()}
        elif name == "SVDF" and o is not None:
            x = tflite.SVDFOptions()
            x.Init(o.Bytes, o.Pos)
            opts = {"rank": x.Rank()}
        ops.append((name, ins, outs, opts))
    inputs = [int(sg.Inputs(i)) for i in range(sg.InputsLength())]
    outputs = [int(sg.Outputs(i)) for i in range(sg.OutputsLength())]
    return tensors, ops, inputs, outputs, m.SubgraphsLength()


def tflm_arena(model: str | Path | bytes, *, abi: str = "arm32", kernels: str = "reference",
               recording: bool = False, name: str | None = None, isa: str = "dsp") -> TflmArena:
    """Predict TFLM's arena for a ``.tflite`` (path or bytes), following ``MicroInterpreter::AllocateTensors``
    (``micro_interpreter.cc:200``) allocation by allocation. ``abi`` is ``arm32`` (an MCU) or ``x86_64`` (the
    Python wheel); ``kernels`` is ``reference`` or ``cmsis-nn``, whose scratch buffers depend on the core's
    code path ``isa`` (:func:`cmsis_isa`: ``dsp`` for M4, M7, M33; ``mve`` for M55, M85; ``none`` for M0, M3);
    ``recording`` uses the
    ``RecordingMicroAllocator`` the Python interpreter is built with (bigger allocator objects).

    >>> from chipfit.measure.tflm import BASELINE_TFLITE
    >>> a = tflm_arena(BASELINE_TFLITE, abi="x86_64", recording=True)
    >>> a.planned, a.total > a.planned
    (32, True)
    """
    if abi not in ABIS:
        raise GraphError(f"unknown ABI '{abi}': expected one of {', '.join(ABIS)}.")
    if kernels not in KERNELS:
        raise GraphError(f"unknown TFLM kernels '{kernels}': expected one of {', '.join(KERNELS)}.")
    _check_isa(isa)
    a = ABIS[abi]
    data, label = tflite_bytes(model, name=name)
    tensors, ops, g_in, g_out, n_sub = _read(data, label)
    tail = _Tail()
    # MicroAllocator::Create (micro_allocator.cc:566) / RecordingMicroAllocator::Create: allocator, planner, allocator
    alloc = "RecordingSingleArenaBufferAllocator" if recording else "SingleArenaBufferAllocator"
    tail.alloc("allocators", a.size(alloc), a.align(alloc))
    tail.alloc("allocators", a.size("GreedyMemoryPlanner"), a.align("GreedyMemoryPlanner"))
    ma = "RecordingMicroAllocator" if recording else "MicroAllocator"
    tail.alloc("allocators", a.size(ma), a.align(ma))
    # StartModelAllocation (micro_allocator.cc:625)
    tail.alloc("allocators", a.size("MicroBuiltinDataAllocator"), a.align("MicroBuiltinDataAllocator"))
    tail.alloc("allocators", a.size("SubgraphAllocations") * n_sub, a.align("SubgraphAllocations"))
    tail.alloc("eval tensors", a.size("TfLiteEvalTensor") * len(tensors), a.align("TfLiteEvalTensor"))
    tail.alloc("node structs", a.size("NodeAndRegistration") * len(ops), a.align("NodeAndRegistration"))
    # PrepareNodeAndRegistrationDataFromFlatbuffer: builtin params per op
    for op, *_ in ops:
        if op in _PARAMS:
            tail.alloc("builtin params", a.size(_PARAMS[op]), a.align(_PARAMS[op]))
    # InitSubgraphs: each kernel's op data, 16-aligned (MicroAllocator::AllocatePersistentBuffer, line 690)
    table = {**_OPDATA_COMMON, **_OPDATA[kernels]}
    for op, *_ in ops:
        if op in table:
            tail.alloc("kernel op data", a.size(table[op]), ALIGN)
    # PrepareSubgraphs: per-channel multipliers and shifts (conv_common.cc:177, depthwise_conv_common.cc:168,
    # fully_connected_common.cc:112), scratch requests (head)
    scratch: list[tuple[int, int]] = []  # (op step, bytes)
    for k, (op, ins, outs, opts) in enumerate(ops, start=1):
        it = [tensors[i] for i in ins if i >= 0]
        ot = [tensors[o] for o in outs]
        per_channel = len(it) > 1 and it[1].channels > 1
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D") or (op == "FULLY_CONNECTED" and per_channel):
            dim = 0 if op != "DEPTHWISE_CONV_2D" else 3
            n = it[1].shape[dim] if op != "FULLY_CONNECTED" else it[1].channels
            tail.alloc("per-channel multipliers and shifts", 4 * n, ALIGN)
            tail.alloc("per-channel multipliers and shifts", 4 * n, ALIGN)
        if op in ("MEAN", "SUM") and it[0].type in (7, 9):  # reduce_common.cc:239-250
            scratch += [(k, 4 * math.prod(ot[0].shape)), (k, 4 * len(it[0].shape)),
                        (k, 4 * math.prod(it[1].shape or (1,)))]
        elif op in ("MEAN", "SUM", "REDUCE_MAX"):
            scratch += [(k, 4 * len(it[0].shape)), (k, 4 * math.prod(it[1].shape or (1,)))]
        if kernels == "cmsis-nn":
            scratch += [(k, b) for b in _cmsis_scratch(op, opts, it, ot, per_channel, isa) if b > 0]
    # FinishModelAllocation: scratch buffer handles, then variable tensors, then the plan
    if scratch:
        tail.alloc("scratch handles", a.size("ScratchBufferHandle") * len(scratch), a.align("ScratchBufferHandle"))
    for t in tensors:
        if t.variable:
            tail.alloc("variable tensors", t.nbytes, ALIGN)
    bufs = _tflm_buffers(tensors, ops, g_in, g_out, scratch)
    p = plan(bufs)
    # AllocateTensors: input and output TfLiteTensors with their quantization (micro_interpreter.cc:234-275)
    for group in (g_in, g_out):
        tail.alloc("input/output tensors", a.ptr * len(group), ALIGN)
        for i in group:
            tail.alloc("input/output tensors", a.size("TfLiteTensor"), a.align("TfLiteTensor"))
            if tensors[i].quantized:
                tail.alloc("input/output tensors", a.size("TfLiteAffineQuantization"),
                           a.align("TfLiteAffineQuantization"))
                tail.alloc("input/output tensors", 4 + 4 * tensors[i].channels, a.align("TfLiteIntArray"))
    if recording:
        tail.alloc("unattributed (Python interpreter)", PYTHON_UNATTRIBUTED, 1)
    # Planning needs room between head and tail for AllocationInfo and the planner's arrays (temp section),
    # above the head of scratch-buffer requests (micro_allocator.cc:1117-1190)
    n_info = len(tensors) + len(scratch)
    req_head = align_up(a.size("ScratchBufferRequest") * (len(scratch) + MAX_SCRATCH_PER_OP))
    temp = align_up(8 * n_sub) + align_up(a.size("AllocationInfo") * n_info) + 40 * len(bufs)
    required = align_up(max(p.arena, req_head + temp) + tail.used)
    return TflmArena(label, abi, kernels, p.arena, tail.used, required, sum(b for _, b in scratch),
                     tuple(tail.items.items()), p, isa if kernels == "cmsis-nn" else None)


def _tflm_buffers(tensors: list[_T], ops: list[tuple[str, list[int], list[int], dict[str, int]]],
                  g_in: list[int], g_out: list[int], scratch: list[tuple[int, int]]) -> list[Buffer]:
    n = len(ops)
    first = [-1] * len(tensors)
    last = [-1] * len(tensors)
    for i in g_in:
        first[i] = 0 if first[i] == -1 else first[i]
        last[i] = 0
    for k, (_, ins, outs, _) in enumerate(ops, start=1):
        for o in outs:
            if first[o] == -1:
                first[o] = k
        for i in ins:
            if i >= 0:
                last[i] = k
        for o in outs:
            last[o] = k
    for o in g_out:
        if first[o] == -1:
            first[o] = n
        last[o] = n
    bufs = [Buffer(f"t{i}", align_up(t.nbytes), first[i], last[i]) for i, t in enumerate(tensors)
            if not t.const and not t.variable and t.nbytes]
    bufs += [Buffer(f"scratch{j}", align_up(b), k, k) for j, (k, b) in enumerate(scratch)]
    return bufs


_CLASS_OPS = {"conv": "CONV_2D", "depthwise": "DEPTHWISE_CONV_2D", "dense": "FULLY_CONNECTED",
              "pool": "AVERAGE_POOL_2D", "add": "ADD", "mul": "MUL", "softmax": "SOFTMAX", "reshape": "RESHAPE",
              "pad": "PAD", "quantize": "QUANTIZE", "transpose": "TRANSPOSE", "concat": "CONCATENATION"}
# constant inputs TFLM keeps an eval tensor for (weights + bias, reshape's shape, pad's paddings, mean's axis)
_CONST_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "RESHAPE": 1, "PAD": 1, "MEAN": 1,
                 "TRANSPOSE": 1}


def tflm_ram(graph: OpGraph, nbytes: Callable[[str], int], *, abi: str = "arm32",
             kernels: str = "reference", isa: str = "dsp") -> tuple[ArenaPlan, int, dict[str, int]]:
    """TFLM's arena for an OpGraph (no ``.tflite`` yet, e.g. during search): the plan (with the kernels'
    scratch buffers), the persistent tail and its breakdown. The same allocation sequence as
    :func:`tflm_arena`; a graph read from a ``.tflite`` gives the same plan, and op classes stand for TFLM
    ops where the graph came from PyTorch or ONNX (channels from bias counts, constants per op). CMSIS-NN's
    scratch buffers follow the core's code path ``isa`` (:func:`cmsis_isa`), with padding inferred from the
    shapes (TFLM's own formula) and no dilation.

    >>> from chipfit.graph.opgraph import Node, OpClass, OpGraph, TensorInfo
    >>> g = OpGraph("fc", (Node("fc", OpClass.DENSE, "FULLY_CONNECTED", ("x",), ("y",), weights=40, biases=4),),
    ...             {"x": TensorInfo((1, 10), "int8"), "y": TensorInfo((1, 4), "int8")}, ("x",), ("y",))
    >>> p, tail, items = tflm_ram(g, lambda t: g.tensors[t].numel)
    >>> p.arena, tail
    (32, 404)
    """
    a = ABIS[abi]
    ops = [n.op_type if n.op_type in TFLM_OP_NAMES else _CLASS_OPS.get(n.op.value, n.op_type.upper())
           for n in graph.nodes]
    tail = _Tail()
    for what in ("SingleArenaBufferAllocator", "GreedyMemoryPlanner", "MicroAllocator", "MicroBuiltinDataAllocator",
                 "SubgraphAllocations"):
        tail.alloc("allocators", a.size(what), a.align(what))
    n_tensors = len(graph.tensors) + sum(_CONST_INPUTS.get(op, 0) for op in ops)
    tail.alloc("eval tensors", a.size("TfLiteEvalTensor") * n_tensors, a.align("TfLiteEvalTensor"))
    tail.alloc("node structs", a.size("NodeAndRegistration") * len(ops), a.align("NodeAndRegistration"))
    for op in ops:
        if op in _PARAMS:
            tail.alloc("builtin params", a.size(_PARAMS[op]), a.align(_PARAMS[op]))
    table = {**_OPDATA_COMMON, **_OPDATA[kernels]}
    for op in ops:
        if op in table:
            tail.alloc("kernel op data", a.size(table[op]), ALIGN)
    scratch: list[tuple[int, int]] = []
    for k, (n, op) in enumerate(zip(graph.nodes, ops, strict=True), start=1):
        cout = n.biases or 0
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D") and cout:
            tail.alloc("per-channel multipliers and shifts", 4 * cout, ALIGN)
            tail.alloc("per-channel multipliers and shifts", 4 * cout, ALIGN)
        if op == "MEAN":
            out = graph.tensors.get(n.outputs[0]) if n.outputs else None
            scratch += [(k, 4 * (out.numel if out else 1)), (k, 16), (k, 8)]
        if kernels == "cmsis-nn":
            scratch += [(k, b) for b in _graph_cmsis_scratch(graph, n, op, cout, isa) if b > 0]
    if scratch:
        tail.alloc("scratch handles", a.size("ScratchBufferHandle") * len(scratch), a.align("ScratchBufferHandle"))
    bufs = buffers(graph, nbytes, tflm=True)
    bufs += [Buffer(f"scratch{j}", align_up(b), k, k) for j, (k, b) in enumerate(scratch)]
    p = plan(bufs)
    for group in (graph.inputs, graph.outputs):
        tail.alloc("input/output tensors", a.ptr * len(group), ALIGN)
        for _ in group:
            tail.alloc("input/output tensors", a.size("TfLiteTensor"), a.align("TfLiteTensor"))
            tail.alloc("input/output tensors", a.size("TfLiteAffineQuantization"), a.align("TfLiteAffineQuantization"))
            tail.alloc("input/output tensors", 8, a.align("TfLiteIntArray"))
    return p, tail.used, tail.items


def _nhwc(graph: OpGraph, tensor: str) -> tuple[int, int, int, int] | None:
    """A 4-d tensor's shape as (N, H, W, C) in the graph's layout, a 3-d one's as (N, 1, W, C) (a 1-d
    convolution runs as a 2-d one of height 1); None otherwise."""
    t = graph.tensors.get(tensor)
    if t is not None and len(t.shape) == 3:
        n, a, b = (int(x) for x in t.shape)
        return (n, 1, a, b) if graph.layout == "NHWC" else (n, 1, b, a)
    if t is None or len(t.shape) != 4:
        return None
    n, a, b, c = (int(x) for x in t.shape)
    return (n, a, b, c) if graph.layout == "NHWC" else (n, b, c, a)


def _pair(v: Sequence[int]) -> tuple[int, int]:
    """(height, width) of a node's kernel or stride: a 1-d one is (1, k), none is (1, 1)."""
    if len(v) >= 2:
        return int(v[0]), int(v[1])
    return 1, int(v[0]) if v else 1


def _graph_cmsis_scratch(graph: OpGraph, n: Any, op: str, cout: int, isa: str) -> list[int]:
    """CMSIS-NN scratch requests of one OpGraph node (the rules of :func:`_cmsis_scratch`, from what the graph
    knows: shapes, kernel, stride; padding from TFLM's formula on the shapes)."""
    _check_isa(isa)
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D") and cout and n.inputs and n.outputs:
        x, y = _nhwc(graph, n.inputs[0]), _nhwc(graph, n.outputs[0])
        kh, kw = _pair(n.kernel)
        sh, sw = _pair(n.stride)
        if x is None or y is None:
            return []
        _, ih, iw, ic = x
        batch, oh, ow, oc = y
        pad = (_same_pad(ih, kh, sh, 1, oh), _same_pad(iw, kw, sw, 1, ow))
        if op == "CONV_2D":
            fc = max(n.weights // max(cout * kh * kw, 1), 1)
            return [conv_s8_scratch(isa, in_hwc=(ih, iw, ic), filter_hwc=(kh, kw, fc), out_hw=(oh, ow),
                                    stride=(sh, sw), padding=pad)]
        return [depthwise_s8_scratch(isa, in_hwc=(ih, iw, ic), kernel_hw=(kh, kw), out_c=oc, out_w=ow, batch=batch,
                                     stride=(sh, sw), padding=pad)]
    if op == "AVERAGE_POOL_2D" and n.outputs and n.outputs[0] in graph.tensors:
        shape = graph.tensors[n.outputs[0]].shape
        return [avgpool_s8_scratch(isa, int(shape[-1] if graph.layout == "NHWC" else shape[1] if len(shape) > 1
                                            else 1))]
    if op == "FULLY_CONNECTED" and n.outputs and n.outputs[0] in graph.tensors:
        out = graph.tensors[n.outputs[0]].shape
        depth = int(out[-1]) if out else 1
        accum = n.weights // max(depth, 1)
        # per-channel weights assumed (chipfit's int8 export quantizes per channel)
        return fully_connected_s8_scratch(isa, accum_depth=accum, out_depth=depth, out_rank=len(out),
                                          per_channel=True)
    return []


TFLM_OP_NAMES = frozenset({*_PARAMS, *_OPDATA["reference"], *_OPDATA_COMMON, "RESHAPE", "TRANSPOSE", "QUANTIZE",
                           "CONCATENATION", "SQUEEZE"})
