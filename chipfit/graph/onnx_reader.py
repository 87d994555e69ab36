"""Build an OpGraph from an ONNX model (fp32 or QDQ int8), counting MACs and params ourselves.

Shapes come from ``onnx.shape_inference`` with the batch dimension fixed to 1. In QDQ models, weights reach
Conv/Gemm through ``DequantizeLinear`` and activations pass through Q/DQ pairs: both are resolved, so a QDQ
model has the same MACs and params as its fp32 source. QOperator models (``quantize_static(...,
quant_format=QuantFormat.QOperator)``) are read too: ``QLinearConv``, ``QLinearMatMul`` and ONNX Runtime's
``com.microsoft`` ops (``QGemm``, ``QLinearAdd``, ``QLinearMul``, ``QLinearAveragePool``,
``QLinearGlobalAveragePool``, ``QLinearConcat``, ``QLinearSigmoid``, ``QLinearLeakyRelu``), whose shapes
ONNX's own inference does not know and chipfit infers itself.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from chipfit.errors import GraphError, ModelFileError
from chipfit.graph.opgraph import Node, OpClass, OpGraph, TensorInfo, finalize

_ONNX_DTYPES = {1: "float32", 10: "float16", 3: "int8", 2: "uint8", 6: "int32", 7: "int64", 5: "int16", 9: "bool"}
_ACT = {"Relu": "relu", "Clip": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish",
        "HardSigmoid": "hardsigmoid", "LeakyRelu": "leaky_relu", "Elu": "elu", "Gelu": "gelu", "Swish": "silu"}
_POOL = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"}
_ALIAS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "QuantizeLinear",
          "DequantizeLinear"}
_SIMPLE = {"Add": OpClass.ADD, "Sum": OpClass.ADD, "Mul": OpClass.MUL, "Softmax": OpClass.SOFTMAX,
           "LogSoftmax": OpClass.SOFTMAX, "Concat": OpClass.CONCAT, "Pad": OpClass.PAD,
           "Transpose": OpClass.TRANSPOSE, "BatchNormalization": OpClass.OTHER}
_CONST_OPS = {"Constant", "Shape", "Gather", "Cast", "ConstantOfShape", "Range", "Slice", "Concat", "Unsqueeze",
              "Squeeze", "Reshape", "DequantizeLinear", "Identity", "Mul", "Add", "Div", "Sub"}


def _load(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise ModelFileError(f"ONNX model not found: expected a file at '{path}'. Check the path.")
    if path.stat().st_size == 0:
        raise ModelFileError(f"'{path}' is empty (0 bytes); expected an ONNX model, e.g. from torch.onnx.export. "
                             "Was the export interrupted?")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ModelFileError(
            f"'{path}' is not a readable ONNX model ({type(exc).__name__}: {exc}). "
            "Expected a protobuf .onnx file, e.g. from torch.onnx.export."
        ) from exc


def _check_structure(mo: onnx.ModelProto, label: str) -> None:
    """Refuse what cannot be costed before any inference: no graph, no nodes, inputs without a static shape."""
    g = mo.graph
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    missing = [what for what, n in (("nodes", len(g.node)), ("inputs", len(inputs)), ("outputs", len(g.output)))
               if n == 0]
    if missing:
        raise ModelFileError(f"'{label}' has an empty ONNX graph (no {', no '.join(missing)}: {len(g.node)} nodes, "
                             f"{len(inputs)} inputs, {len(g.output)} outputs); expected a model exported with its "
                             "graph, e.g. by torch.onnx.export.")
    for inp in inputs:
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type"):
            raise ModelFileError(f"ONNX input '{inp.name}' of '{label}' is not a tensor; chipfit costs models whose "
                                 "inputs are tensors of a fixed shape.")
        if not tt.HasField("shape") or len(tt.shape.dim) == 0:
            raise ModelFileError(f"ONNX input '{inp.name}' of '{label}' has no shape ({len(tt.shape.dim)} "
                                 "dimensions declared); export with a fixed input shape, e.g. torch.onnx.export(model, "
                                 "torch.zeros(1, 3, 32, 32), ...).")


def from_onnx(model: str | Path | onnx.ModelProto, *, name: str | None = None) -> OpGraph:
    """Read an ONNX model into an OpGraph.

    >>> import onnx, onnx.helper as h, numpy as np
    >>> w = onnx.numpy_helper.from_array(np.ones((4, 10), np.float32), "w")
    >>> g = h.make_graph([h.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g",
    ...     [h.make_tensor_value_info("x", 1, [1, 10])], [h.make_tensor_value_info("y", 1, [1, 4])], [w])
    >>> from_onnx(h.make_model(g)).macs
    40
    """
    mo = _load(model)
    label = name or (Path(model).stem if isinstance(model, str | Path) else mo.graph.name or "onnx")
    mo = onnx.ModelProto.FromString(mo.SerializeToString())
    _check_structure(mo, label)
    for inp in mo.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and (dims[0].dim_param or dims[0].dim_value == 0):
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    try:
        mo = _infer_shapes(mo)
    except Exception as exc:
        raise ModelFileError(f"ONNX shape inference failed for '{label}': {exc}") from exc
    try:
        return _build(mo, label)
    except GraphError:
        raise
    except (IndexError, KeyError, ValueError, TypeError, AttributeError) as exc:  # a corrupt graph, not a bug
        raise ModelFileError(f"'{label}' is a malformed ONNX graph ({type(exc).__name__}: {exc}); expected a model "
                             "that passes onnx.checker.check_model, e.g. from torch.onnx.export.") from exc


# ONNX Runtime's quantized (QOperator) ops outside the ONNX domain, whose output shapes chipfit infers itself.
_MS_SAME = {"QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearReduceMean"}
_MS_OPS = {"QGemm", "QLinearAdd", "QLinearMul", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat",
           *_MS_SAME}


def _infer_shapes(mo: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference, then, while ONNX Runtime's contrib ops (QOperator models) leave outputs without a
    shape, infer those from their inputs and run ONNX's inference again from there."""
    mo = onnx.shape_inference.infer_shapes(mo, strict_mode=False, data_prop=True)
    if not any(n.op_type in _MS_OPS for n in mo.graph.node):
        return mo
    for _ in range(len(mo.graph.node)):
        known = _known_types(mo)
        added = False
        for n in mo.graph.node:
            if n.op_type not in _MS_OPS or not n.output or n.output[0] in known:
                continue
            got = _ms_shape(n, known)
            if got is not None:
                mo.graph.value_info.append(onnx.helper.make_tensor_value_info(n.output[0], got[1], list(got[0])))
                added = True
        if not added:
            break
        mo = onnx.shape_inference.infer_shapes(mo, strict_mode=False, data_prop=True)
    return mo


def _known_types(mo: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], int]]:
    """Shape and element type of every tensor whose shape is fully known (initializers included)."""
    out: dict[str, tuple[tuple[int, ...], int]] = {}
    for v in [*mo.graph.input, *mo.graph.value_info, *mo.graph.output]:
        tt = v.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            out[v.name] = (tuple(int(d.dim_value) for d in tt.shape.dim), tt.elem_type)
    for t in mo.graph.initializer:
        out[t.name] = (tuple(int(d) for d in t.dims), t.data_type)
    return out


def _pool_out(size: int, k: int, s: int, pad: int, ceil: bool) -> int:
    span = size + pad - k
    return (-(-span // s) if ceil else span // s) + 1


def _ms_shape(n: onnx.NodeProto, known: dict[str, tuple[tuple[int, ...], int]]
              ) -> tuple[tuple[int, ...], int] | None:
    """Output shape and element type of one ONNX Runtime contrib op, or None while an input is unknown."""
    def get(i: int) -> tuple[tuple[int, ...], int] | None:
        return known.get(n.input[i]) if len(n.input) > i and n.input[i] else None

    op = n.op_type
    zp = {"QGemm": 8, "QLinearAdd": 7, "QLinearMul": 7, "QLinearConcat": 1}.get(op, 4)
    zp_t = get(zp)
    x = get(0) if op != "QLinearConcat" else get(2)
    if x is None:
        return None
    elem = zp_t[1] if zp_t is not None else (x[1] if op != "QGemm" else onnx.TensorProto.FLOAT)
    shape = x[0]
    if op in _MS_SAME:
        return shape, elem
    if op in ("QLinearAdd", "QLinearMul"):
        y = get(3)
        return (tuple(np.broadcast_shapes(shape, y[0])), elem) if y is not None else None
    last = bool(_attr(n, "channels_last", 0))
    if op == "QLinearGlobalAveragePool":
        return ((shape[0], *[1] * (len(shape) - 2), shape[-1]) if last else (*shape[:2], *[1] * (len(shape) - 2))
                ), elem
    if op == "QLinearAveragePool":
        k = list(_attr(n, "kernel_shape", ()) or ())  # type: ignore[call-overload]
        sp = shape[1:-1] if last else shape[2:]
        st = list(_attr(n, "strides", ()) or [1] * len(k))  # type: ignore[call-overload]
        pads = list(_attr(n, "pads", ()) or [0] * 2 * len(k))  # type: ignore[call-overload]
        auto = _attr(n, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        ceil = bool(_attr(n, "ceil_mode", 0))
        if auto.startswith("SAME"):
            o = [-(-s // t) for s, t in zip(sp, st, strict=True)]
        else:
            o = [_pool_out(s, kk, t, pads[i] + pads[i + len(k)], ceil)
                 for i, (s, kk, t) in enumerate(zip(sp, k, st, strict=True))]
        return ((shape[0], *o, shape[-1]) if last else (*shape[:2], *o)), elem
    if op == "QGemm":
        b = get(3)
        if b is None:
            return None
        m = shape[1] if _attr(n, "transA", 0) else shape[0]
        nn_ = b[0][0] if _attr(n, "transB", 0) else b[0][1]
        return (m, nn_), elem
    if op == "QLinearConcat":
        parts = [get(i) for i in range(2, len(n.input), 3)]
        if any(p is None for p in parts):
            return None
        axis = int(_attr(n, "axis", 1))  # type: ignore[call-overload]
        axis %= len(shape)
        total = sum(p[0][axis] for p in parts if p is not None)
        return tuple(total if i == axis else d for i, d in enumerate(shape)), elem
    return None


def _build(mo: onnx.ModelProto, label: str) -> OpGraph:
    """The OpGraph of a shape-inferred model."""
    inits = {t.name: t for t in mo.graph.initializer}
    info: dict[str, TensorInfo] = {}
    for v in [*mo.graph.input, *mo.graph.value_info, *mo.graph.output]:
        tt = v.type.tensor_type
        dims = tuple(int(d.dim_value) for d in tt.shape.dim)
        info[v.name] = TensorInfo(dims, _ONNX_DTYPES.get(tt.elem_type, "float32"))
    const: dict[str, np.ndarray | None] = {n: None for n in inits}  # names of constant values
    const_arr = {n: numpy_helper.to_array(t) for n, t in inits.items()}
    graph_inputs = tuple(i.name for i in mo.graph.input if i.name not in inits)
    for gi in graph_inputs:
        if gi not in info or any(d <= 0 for d in info[gi].shape):
            raise ModelFileError(f"ONNX input '{gi}' of '{label}' has a dynamic or unknown shape beyond the batch "
                                 f"dimension ({info[gi].shape if gi in info else 'none'}); export with a fixed input "
                                 "size.")
    alias: dict[str, str] = {}
    qtype: dict[str, str] = {}
    nodes: list[Node] = []
    for i, n in enumerate(mo.graph.node):
        ins = [x for x in n.input if x]
        if n.op_type == "Constant" or (ins and all(x in const for x in ins)):
            for o in n.output:
                const[o] = None
            if n.op_type == "DequantizeLinear" and ins[0] in const_arr:
                const_arr[n.output[0]] = const_arr[ins[0]]
            continue
        act_in = tuple(alias.get(x, x) for x in ins if x not in const)
        out = n.output[0]
        nname = n.name or f"{n.op_type}_{i}"
        if n.op_type == "QuantizeLinear" and act_in and len(n.input) > 2 and n.input[2] in inits:
            qtype[act_in[0]] = _ONNX_DTYPES.get(inits[n.input[2]].data_type, "int8")  # QDQ: the activation's int type
        if n.op_type in _ALIAS and act_in:
            same = act_in[0] in info and out in info and info[out].shape == info[act_in[0]].shape
            if same or out not in info:
                alias[out] = act_in[0]  # identity, dropout, Q/DQ pairs: the same buffer under a new name
            else:
                nodes.append(Node(nname, OpClass.RESHAPE, n.op_type, act_in[:1], (out,)))
            continue
        if out not in info:
            raise ModelFileError(f"ONNX node '{nname}' ({n.op_type}) of '{label}': shape inference gave no shape "
                                 f"for its output '{out}'; export with static shapes.")
        node = _node(n, nname, act_in, out, info, const_arr)
        if node.op.counts_macs and act_in:  # the integer type the activations run in (QDQ or QOperator)
            a = qtype.get(act_in[0]) or (info[act_in[0]].dtype if act_in[0] in info else None)
            if a in ("int8", "uint8"):
                node = replace(node, attrs={**node.attrs, "act_dtype": a,
                                            "quant": "qoperator" if n.op_type.startswith(("QLinear", "QGemm"))
                                            else "qdq"})
        nodes.append(node)
    outputs = tuple(alias.get(o.name, o.name) for o in mo.graph.output)
    tensors = {k: v for k, v in info.items() if k not in alias}
    g = OpGraph(name=label, nodes=tuple(nodes), tensors=tensors, inputs=graph_inputs, outputs=outputs,
                source="onnx", layout="NCHW")
    return finalize(g)


def _attr(node: onnx.NodeProto, key: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == key:
            return onnx.helper.get_attribute_value(a)
    return default


def _conv(n: onnx.NodeProto, nname: str, act_in: tuple[str, ...], out: str, info: dict[str, TensorInfo],
          arrays: dict[str, np.ndarray], w: np.ndarray | None, b: np.ndarray | None) -> Node:
    """A convolution (float, QLinearConv or ConvInteger) with weight ``w`` and bias ``b``."""
    if w is None:
        raise GraphError(f"ONNX {n.op_type} '{nname}': its weight is not a constant; chipfit needs static weights "
                         "to cost a model.")
    group = int(_attr(n, "group", 1))  # type: ignore[call-overload]
    cin = info[act_in[0]].shape[1] if act_in and act_in[0] in info else 0
    macs = info[out].numel * int(math.prod(w.shape[1:]))
    dw = group > 1 and group == cin and w.shape[1] == 1
    return Node(nname, OpClass.DEPTHWISE if dw else OpClass.CONV, n.op_type, act_in, (out,), macs=macs,
                params=int(w.size) + (int(b.size) if b is not None else 0), weights=int(w.size),
                biases=int(b.size) if b is not None else 0, kernel=tuple(w.shape[2:]),
                stride=tuple(_attr(n, "strides", ()) or ()))  # type: ignore[arg-type]


def _node(n: onnx.NodeProto, nname: str, act_in: tuple[str, ...], out: str, info: dict[str, TensorInfo],
          arrays: dict[str, np.ndarray]) -> Node:
    op = n.op_type
    if op in ("QLinearConv", "ConvInteger"):  # weights at input 3 (3 of ConvInteger is w's zero point: use 1)
        wi, bi = (3, 8) if op == "QLinearConv" else (1, -1)
        return _conv(n, nname, act_in, out, info, arrays, arrays.get(n.input[wi]),
                     arrays.get(n.input[bi]) if 0 < bi < len(n.input) and n.input[bi] else None)
    if op in ("QGemm", "QLinearMatMul", "MatMulInteger"):
        wi, bi = {"QGemm": (3, 6), "QLinearMatMul": (3, -1), "MatMulInteger": (1, -1)}[op]
        w = arrays.get(n.input[wi]) if len(n.input) > wi else None
        if w is None:
            return Node(nname, OpClass.OTHER, op, act_in, (out,))
        b = arrays.get(n.input[bi]) if 0 < bi < len(n.input) and n.input[bi] else None
        k = w.shape[1] if op == "QGemm" and int(_attr(n, "transB", 0)) else w.shape[0]  # type: ignore[call-overload]
        return Node(nname, OpClass.DENSE, op, act_in, (out,), macs=info[out].numel * int(k),
                    params=int(w.size) + (int(b.size) if b is not None else 0), weights=int(w.size),
                    biases=int(b.size) if b is not None else 0)
    if op in ("QLinearAdd", "QLinearMul", "QLinearConcat"):
        return Node(nname, {"QLinearAdd": OpClass.ADD, "QLinearMul": OpClass.MUL}.get(op, OpClass.CONCAT), op,
                    act_in, (out,))
    if op in ("QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearReduceMean"):
        k = tuple(_attr(n, "kernel_shape", ()) or ())  # type: ignore[arg-type]
        return Node(nname, OpClass.POOL, op, act_in, (out,), kernel=k)
    if op in ("QLinearSigmoid", "QLinearLeakyRelu"):
        return Node(nname, OpClass.ACTIVATION, op, act_in, (out,))
    if op == "Conv":
        b = arrays.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        return _conv(n, nname, act_in, out, info, arrays, arrays.get(n.input[1]), b)
    if op in ("Gemm", "MatMul"):
        w = arrays.get(n.input[1])
        if w is None:
            return Node(nname, OpClass.OTHER, op, act_in, (out,))
        b = arrays.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        trans_b = int(_attr(n, "transB", 0)) if op == "Gemm" else 0  # type: ignore[arg-type]
        k = w.shape[1] if trans_b else w.shape[0]
        macs = info[out].numel * int(k)
        return Node(nname, OpClass.DENSE, op, act_in, (out,), macs=macs,
                    params=int(w.size) + (int(b.size) if b is not None else 0), weights=int(w.size),
                    biases=int(b.size) if b is not None else 0)
    if op in _ACT:
        return Node(nname, OpClass.ACTIVATION, _ACT[op], act_in, (out,))
    if op in _POOL:
        k = tuple(_attr(n, "kernel_shape", ()) or ())  # type: ignore[arg-type]
        return Node(nname, OpClass.POOL, op, act_in, (out,), kernel=k)
    if op in _SIMPLE:
        return Node(nname, _SIMPLE[op], op, act_in, (out,))
    return Node(nname, OpClass.OTHER, op, act_in, (out,))
