"""Build an OpGraph from a ``.tflite`` flatbuffer (read with the ``tflite`` schema package, no interpreter).

Layout is NHWC. Weights and biases are the constant inputs 1 and 2 of CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED; fused activations are kept on their node.
"""

from __future__ import annotations

import math
from pathlib import Path

import tflite

from chipfit.errors import GraphError, ModelFileError
from chipfit.graph.opgraph import Node, OpClass, OpGraph, TensorInfo, finalize

_CODE_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {getattr(tflite.TensorType, k): k.lower() for k in vars(tflite.TensorType) if not k.startswith("_")}
_FUSED = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}
_CLASSES = {
    "CONV_2D": OpClass.CONV, "DEPTHWISE_CONV_2D": OpClass.DEPTHWISE, "FULLY_CONNECTED": OpClass.DENSE,
    "ADD": OpClass.ADD, "MUL": OpClass.MUL, "AVERAGE_POOL_2D": OpClass.POOL, "MAX_POOL_2D": OpClass.POOL,
    "MEAN": OpClass.POOL, "REDUCE_MAX": OpClass.POOL, "RESHAPE": OpClass.RESHAPE, "SQUEEZE": OpClass.RESHAPE,
    "EXPAND_DIMS": OpClass.RESHAPE, "SOFTMAX": OpClass.SOFTMAX, "LOG_SOFTMAX": OpClass.SOFTMAX,
    "PAD": OpClass.PAD, "PADV2": OpClass.PAD, "CONCATENATION": OpClass.CONCAT, "TRANSPOSE": OpClass.TRANSPOSE,
    "QUANTIZE": OpClass.QUANTIZE, "DEQUANTIZE": OpClass.QUANTIZE, "RELU": OpClass.ACTIVATION,
    "RELU6": OpClass.ACTIVATION, "LOGISTIC": OpClass.ACTIVATION, "TANH": OpClass.ACTIVATION,
    "HARD_SWISH": OpClass.ACTIVATION, "LEAKY_RELU": OpClass.ACTIVATION, "PRELU": OpClass.ACTIVATION,
}
_OPTIONS = {"CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
            "FULLY_CONNECTED": tflite.FullyConnectedOptions, "ADD": tflite.AddOptions}


def tflite_bytes(model: str | Path | bytes, *, name: str | None = None) -> tuple[bytes, str]:
    """``(bytes, name)`` of a ``.tflite`` given as a path or as bytes (named ``model.tflite``); a missing file
    is a :class:`~chipfit.errors.ModelFileError` naming the path.

    >>> tflite_bytes(b"abc")
    (b'abc', 'model.tflite')
    """
    if isinstance(model, bytes):
        return model, name or "model.tflite"
    p = Path(model)
    if not p.is_file():
        raise ModelFileError(f"TFLite model not found: expected a file at '{p}'. Check the path.")
    return p.read_bytes(), name or p.name


def from_tflite(path: str | Path, *, name: str | None = None) -> OpGraph:
    """Read a TFLite model (float or int8) into an OpGraph.

    >>> from_tflite("missing.tflite")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    chipfit.errors.ModelFileError: TFLite model not found ...
    """
    p = Path(path)
    buf, _ = tflite_bytes(p)
    if not buf:
        raise ModelFileError(f"'{p}' is empty (0 bytes); expected a TFLite flatbuffer. Was the conversion "
                             "interrupted?")
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelFileError(f"'{p}' is not a TFLite flatbuffer (expected the 'TFL3' identifier at byte 4; "
                             f"the file has {len(buf):,} bytes).")
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        return _read(model, name or p.stem, len(buf))
    except GraphError as exc:
        raise ModelFileError(str(exc)) from exc
    except Exception as exc:
        raise ModelFileError(f"'{p}' could not be parsed as TFLite ({type(exc).__name__}: {exc}).") from exc


def _opname(model: tflite.Model, index: int) -> str:
    code = model.OperatorCodes(index)
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == tflite.BuiltinOperator.CUSTOM:
        return "CUSTOM:" + (code.CustomCode() or b"?").decode()
    return _CODE_NAMES.get(builtin, f"OP_{builtin}")


def _read(model: tflite.Model, label: str, size: int) -> OpGraph:
    if model.SubgraphsLength() < 1:
        raise GraphError(f"TFLite model '{label}' has no subgraph.")
    sg = model.Subgraphs(0)
    lengths = {"tensors": sg.TensorsLength(), "operators": sg.OperatorsLength(), "inputs": sg.InputsLength(),
               "outputs": sg.OutputsLength(), "buffers": model.BuffersLength(),
               "operator codes": model.OperatorCodesLength()}
    for what, n in lengths.items():  # each entry takes 4 bytes at least: a larger count is a corrupt file
        if n * 4 > size:
            raise GraphError(f"TFLite model '{label}' is corrupt: it declares {n:,} {what} in {size:,} bytes.")
    counts = {"operators": sg.OperatorsLength(), "inputs": sg.InputsLength(), "outputs": sg.OutputsLength()}
    if not all(counts.values()):
        raise GraphError(f"TFLite model '{label}' has an empty graph ("
                         + ", ".join(f"{n} {k}" for k, n in counts.items()) + "); expected a converted model.")
    tinfo: dict[int, TensorInfo] = {}
    names: dict[int, str] = {}
    const: set[int] = set()
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        tinfo[i] = TensorInfo(shape, _TYPE_NAMES.get(t.Type(), "float32"))
        names[i] = (t.Name() or b"").decode() or f"t{i}"
        b = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        if b is not None and (b.DataLength() > 0 or b.Size() > 0):
            const.add(i)
    inputs = tuple(names[sg.Inputs(i)] for i in range(sg.InputsLength()))
    for i in range(sg.InputsLength()):
        if not tinfo[sg.Inputs(i)].shape:
            raise GraphError(f"TFLite input '{names[sg.Inputs(i)]}' of '{label}' has no shape (0 dimensions); "
                             "convert with a fixed input shape.")
    outputs = tuple(names[sg.Outputs(i)] for i in range(sg.OutputsLength()))
    nodes: list[Node] = []
    weight_dtype = "float32"
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        opname = _opname(model, op.OpcodeIndex())
        ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
        cls = _CLASSES.get(opname, OpClass.OTHER)
        act_in = tuple(names[i] for i in ins if i >= 0 and i not in const)
        out_names = tuple(names[o] for o in outs)
        macs = weights = biases = 0
        kernel: tuple[int, ...] = ()
        stride: tuple[int, ...] = ()
        activation = None
        if cls in (OpClass.CONV, OpClass.DEPTHWISE, OpClass.DENSE):
            w = tinfo[ins[1]]
            weight_dtype = w.dtype
            weights = w.numel
            biases = tinfo[ins[2]].numel if len(ins) > 2 and ins[2] >= 0 else 0
            out = tinfo[outs[0]]
            if cls is OpClass.CONV:  # weights [Cout, kh, kw, Cin]
                macs = out.numel * int(math.prod(w.shape[1:]))
                kernel = tuple(w.shape[1:3])
            elif cls is OpClass.DEPTHWISE:  # weights [1, kh, kw, Cout]
                macs = out.numel * int(w.shape[1] * w.shape[2])
                kernel = tuple(w.shape[1:3])
            else:  # weights [Cout, Cin]
                macs = int(math.prod(out.shape[:-1]) or 1) * int(w.shape[0] * w.shape[1])
        if opname in _OPTIONS and op.BuiltinOptions() is not None:
            opts = _OPTIONS[opname]()
            opts.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            activation = _FUSED.get(opts.FusedActivationFunction())
            if hasattr(opts, "StrideH"):
                stride = (opts.StrideH(), opts.StrideW())
        nodes.append(Node(f"{k}:{opname.lower()}", cls, opname, act_in, out_names, macs=macs,
                          params=weights + biases, weights=weights, biases=biases, kernel=kernel,
                          stride=stride, activation=activation))
    tensors = {names[i]: v for i, v in tinfo.items() if i not in const}
    g = OpGraph(name=label, nodes=tuple(nodes), tensors=tensors, inputs=inputs, outputs=outputs,
                source="tflite", layout="NHWC", weight_dtype=weight_dtype)
    return finalize(g)
