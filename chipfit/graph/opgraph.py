"""OpGraph: chipfit's small IR of an inference graph.

Conventions (the same for every builder):

* MACs are the multiply-accumulates of convolutions, depthwise convolutions and dense layers at batch 1.
  Bias, activations, pooling and element-wise ops are costed as ops but are not counted as MACs.
* ``params`` = weights + biases of those layers (BatchNorm folded into the preceding layer, as exporters do).
* Activations that directly follow a conv / depthwise / dense / add node are fused into it (as TFLite,
  TFLM and ONNX Runtime do), so they cost no extra tensor.
* Reshape-like ops (flatten, reshape, squeeze, dropout in eval, quantize/dequantize pairs) alias their
  input buffer: they cost no memory and almost no time.

>>> from chipfit.graph import OpGraph, Node, OpClass, TensorInfo
>>> g = OpGraph(name="tiny", nodes=(Node("fc", OpClass.DENSE, "linear", ("x",), ("y",), macs=40, params=44),),
...             tensors={"x": TensorInfo((1, 10)), "y": TensorInfo((1, 4))}, inputs=("x",), outputs=("y",))
>>> g.macs, g.params
(40, 44)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum


class OpClass(StrEnum):
    """The op classes the cost model knows how to price."""

    CONV = "conv"
    DEPTHWISE = "depthwise"
    DENSE = "dense"
    POOL = "pool"
    ADD = "add"
    MUL = "mul"
    ACTIVATION = "activation"
    SOFTMAX = "softmax"
    RESHAPE = "reshape"
    CONCAT = "concat"
    PAD = "pad"
    TRANSPOSE = "transpose"
    QUANTIZE = "quantize"
    DSP = "dsp"
    OTHER = "other"

    @property
    def counts_macs(self) -> bool:
        return self in (OpClass.CONV, OpClass.DEPTHWISE, OpClass.DENSE)

    @property
    def is_alias(self) -> bool:
        """Ops whose output shares its input's buffer."""
        return self is OpClass.RESHAPE


DTYPE_BYTES: Mapping[str, int] = {
    "float32": 4,
    "float16": 2,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "int64": 8,
    "bool": 1,
}


@dataclass(frozen=True)
class TensorInfo:
    """Shape (batch 1) and dtype of an activation tensor."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def numel(self) -> int:
        return int(math.prod(self.shape)) if self.shape else 1

    def nbytes(self, dtype: str | None = None) -> int:
        return self.numel * DTYPE_BYTES.get(dtype or self.dtype, 4)


@dataclass(frozen=True)
class Node:
    """One op of the graph, in execution order.

    ``inputs``/``outputs`` name activation tensors only (weights are summarised in ``params``).
    ``op_type`` keeps the source format's name (``Conv``, ``CONV_2D``, ``conv2d``) for reporting and for
    runtime op-support checks.
    """

    name: str
    op: OpClass
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    macs: int = 0
    params: int = 0
    weights: int = 0
    biases: int = 0
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    activation: str | None = None
    attrs: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class OpGraph:
    """An ordered inference graph. Build one with :func:`from_onnx`, :func:`from_tflite` or :func:`from_torch`."""

    name: str
    nodes: tuple[Node, ...]
    tensors: Mapping[str, TensorInfo]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    source: str = "memory"
    layout: str = "NCHW"
    weight_dtype: str = "float32"

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def params(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def weights(self) -> int:
        return sum(n.weights for n in self.nodes)

    @property
    def biases(self) -> int:
        return sum(n.biases for n in self.nodes)

    def shape(self, tensor: str) -> tuple[int, ...]:
        return self.tensors[tensor].shape

    def macs_by_class(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            if n.macs:
                out[n.op.value] = out.get(n.op.value, 0) + n.macs
        return out


_FUSABLE_PRODUCERS = (OpClass.CONV, OpClass.DEPTHWISE, OpClass.DENSE, OpClass.ADD)


def finalize(graph: OpGraph) -> OpGraph:
    """Fuse activations into their producers and drop dead nodes; every builder ends with this."""
    consumers: dict[str, int] = {}
    for n in graph.nodes:
        for t in n.inputs:
            consumers[t] = consumers.get(t, 0) + 1
    producer: dict[str, int] = {}
    nodes: list[Node | None] = []
    rename: dict[str, str] = {}
    for n in graph.nodes:
        n = replace(n, inputs=tuple(rename.get(t, t) for t in n.inputs))
        src = producer.get(n.inputs[0]) if n.inputs else None
        prev = nodes[src] if src is not None else None
        if (
            n.op is OpClass.ACTIVATION
            and prev is not None
            and prev.op in _FUSABLE_PRODUCERS
            and prev.activation is None
            and consumers.get(n.inputs[0], 0) == 1
            and n.inputs[0] not in graph.outputs
        ):
            rename[n.outputs[0]] = prev.outputs[0]
            nodes[src] = replace(prev, activation=n.op_type)  # type: ignore[index]
            continue
        for t in n.outputs:
            producer[t] = len(nodes)
        nodes.append(n)
    outputs = tuple(rename.get(t, t) for t in graph.outputs)
    kept = tuple(n for n in nodes if n is not None)
    tensors = {k: v for k, v in graph.tensors.items() if k not in rename}
    return replace(graph, nodes=kept, outputs=outputs, tensors=tensors)
