"""Build an OpGraph from a ``torch.nn.Module`` without writing a file (the search's fast path).

The module runs once at batch 1 under a ``TorchFunctionMode`` that records every torch function call with
its tensor arguments; module names come from global forward hooks. BatchNorm that follows a conv / dense
layer is folded into it, as ONNX and TFLite exporters do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from chipfit.errors import GraphError
from chipfit.graph.opgraph import Node, OpClass, OpGraph, TensorInfo, finalize

_ACTIVATIONS = {
    F.relu: "relu", torch.relu: "relu", torch.Tensor.relu: "relu", F.relu6: "relu6", F.hardtanh: "relu6",
    F.hardswish: "hardswish", F.sigmoid: "sigmoid", torch.sigmoid: "sigmoid", torch.Tensor.sigmoid: "sigmoid",
    F.tanh: "tanh", torch.tanh: "tanh", F.silu: "silu", F.gelu: "gelu", F.leaky_relu: "leaky_relu",
    F.elu: "elu", F.hardsigmoid: "hardsigmoid", F.relu_: "relu", torch.relu_: "relu",
}
_POOLS = {
    F.max_pool1d: "max_pool", F.max_pool2d: "max_pool", F.avg_pool1d: "avg_pool", F.avg_pool2d: "avg_pool",
    F.adaptive_avg_pool1d: "global_avg_pool", F.adaptive_avg_pool2d: "global_avg_pool",
    F.adaptive_max_pool2d: "global_max_pool", torch.mean: "mean", torch.Tensor.mean: "mean",
    torch.amax: "max", torch.Tensor.amax: "max",
}
_ALIASES = {
    torch.flatten: "flatten", torch.Tensor.flatten: "flatten", torch.reshape: "reshape",
    torch.Tensor.reshape: "reshape", torch.Tensor.view: "view", torch.squeeze: "squeeze",
    torch.Tensor.squeeze: "squeeze", torch.unsqueeze: "unsqueeze", torch.Tensor.unsqueeze: "unsqueeze",
    F.dropout: "dropout", F.dropout1d: "dropout", F.dropout2d: "dropout", torch.Tensor.contiguous: "contiguous",
}
_ADDS = {torch.add: "add", torch.Tensor.add: "add", torch.Tensor.__add__: "add", torch.Tensor.__iadd__: "add",
         torch.Tensor.__radd__: "add", torch.Tensor.add_: "add"}
_MULS = {torch.mul: "mul", torch.Tensor.mul: "mul", torch.Tensor.__mul__: "mul", torch.Tensor.__rmul__: "mul"}
_CONVS = {F.conv1d: 1, F.conv2d: 2, torch.conv1d: 1, torch.conv2d: 2}
_LINEARS = {F.linear}
_SOFTMAX = {F.softmax, torch.softmax, torch.Tensor.softmax, F.log_softmax}
_CATS = {torch.cat, torch.concat}
_PADS = {F.pad}
_TRANSPOSES = {torch.permute, torch.Tensor.permute, torch.transpose, torch.Tensor.transpose}
_BATCHNORM = {F.batch_norm}


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, tuple, dict, Any, str]] = []
        self.scope: list[str] = [""]

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            self.calls.append((func, args, kwargs, out, self.scope[-1]))
        return out


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def from_torch(
    module: torch.nn.Module, input_shape: Sequence[int], *, name: str | None = None
) -> OpGraph:
    """Trace ``module`` on one zero input of ``input_shape`` (batch dim included, must be 1).

    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                         torch.nn.Linear(4 * 6 * 6, 2))
    >>> g = from_torch(m, (1, 1, 8, 8))
    >>> g.macs, g.params
    (1584, 330)
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or shape[0] != 1:
        raise GraphError(f"from_torch: expected an input shape with batch 1 first, e.g. (1, 3, 32, 32); given {shape}")
    names = {m: n for n, m in module.named_modules()}
    rec = _Recorder()

    def pre(mod: torch.nn.Module, _inp: Any) -> None:
        rec.scope.append(names.get(mod, rec.scope[-1]))

    def post(mod: torch.nn.Module, _inp: Any, _out: Any) -> None:
        if len(rec.scope) > 1:
            rec.scope.pop()

    h1 = torch.nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = torch.nn.modules.module.register_module_forward_hook(post)
    was_training = module.training
    x = torch.zeros(shape)
    try:
        module.eval()
        with torch.no_grad(), rec:
            module(x)
    except Exception as exc:  # a module that cannot run on this shape is the user's input problem
        raise GraphError(f"from_torch: the module failed on an input of shape {shape}: {exc}") from exc
    finally:
        h1.remove()
        h2.remove()
        module.train(was_training)
    return _build(rec.calls, x, name or type(module).__name__)


def _build(calls: list, x: torch.Tensor, name: str) -> OpGraph:
    tid: dict[int, str] = {id(x): "input"}
    tensors: dict[str, TensorInfo] = {"input": TensorInfo(tuple(x.shape))}
    nodes: list[Node] = []
    used: dict[str, int] = {}
    keep = []  # hold references so ids stay unique

    def uname(scope: str, op: str) -> str:
        base = scope or op
        k = used.get(base, 0)
        used[base] = k + 1
        return base if k == 0 else f"{base}.{op}{k}"

    def act_inputs(args: tuple) -> tuple[str, ...]:
        flat: list[Any] = []
        for a in args:
            flat.extend(a if isinstance(a, list | tuple) else [a])
        return tuple(tid[id(a)] for a in flat if isinstance(a, torch.Tensor) and id(a) in tid)

    producer: dict[str, int] = {}
    for func, args, kwargs, out, scope in calls:
        keep.append(out)
        ins = act_inputs(args)
        if not ins:
            continue  # constant computation (parameters only)
        if func in _ALIASES:
            tid[id(out)] = tid[id(args[0])] if id(args[0]) in tid else ins[0]
            if tuple(out.shape) != tensors[tid[id(out)]].shape:
                oname = uname(scope, _ALIASES[func])
                tid[id(out)] = oname
                tensors[oname] = TensorInfo(tuple(out.shape))
                nodes.append(Node(oname, OpClass.RESHAPE, _ALIASES[func], ins[:1], (oname,)))
            continue
        if func in _BATCHNORM:
            src = producer.get(ins[0])
            if src is not None and nodes[src].op in (OpClass.CONV, OpClass.DEPTHWISE, OpClass.DENSE):
                prev = nodes[src]
                if not prev.biases:
                    cout = int(out.shape[1])
                    nodes[src] = Node(**{**prev.__dict__, "biases": cout, "params": prev.params + cout})
                tid[id(out)] = ins[0]
                continue
        op, op_type, macs, weights, biases, kernel, stride = _classify(func, args, kwargs, out)
        oname = uname(scope, op_type)
        tid[id(out)] = oname
        tensors[oname] = TensorInfo(tuple(out.shape))
        producer[oname] = len(nodes)
        nodes.append(Node(oname, op, op_type, ins, (oname,), macs=macs, params=weights + biases,
                          weights=weights, biases=biases, kernel=kernel, stride=stride))
    final = calls[-1][3] if calls else x
    out_name = tid.get(id(final), "input")
    graph = OpGraph(name=name, nodes=tuple(nodes), tensors=tensors, inputs=("input",), outputs=(out_name,),
                    source="torch", layout="NCHW")
    return finalize(graph)


def _classify(func: Any, args: tuple, kwargs: dict, out: torch.Tensor) -> tuple:
    if func in _CONVS:
        w = _arg(args, kwargs, 1, "weight")
        b = _arg(args, kwargs, 2, "bias")
        groups = int(_arg(args, kwargs, 6, "groups", 1))
        stride = _arg(args, kwargs, 3, "stride", 1)
        cin = int(args[0].shape[1])
        k = tuple(int(s) for s in w.shape[2:])
        macs = int(out.numel()) * int(math.prod(w.shape[1:]))
        depthwise = groups > 1 and groups == cin and int(w.shape[1]) == 1
        st = tuple(stride) if isinstance(stride, list | tuple) else (int(stride),) * len(k)
        return (OpClass.DEPTHWISE if depthwise else OpClass.CONV, f"conv{_CONVS[func]}d", macs,
                int(w.numel()), int(b.numel()) if b is not None else 0, k, st)
    if func in _LINEARS:
        w = _arg(args, kwargs, 1, "weight")
        b = _arg(args, kwargs, 2, "bias")
        macs = int(out.numel()) * int(w.shape[1])
        return OpClass.DENSE, "linear", macs, int(w.numel()), int(b.numel()) if b is not None else 0, (), ()
    table = (
        (_ACTIVATIONS, OpClass.ACTIVATION), (_POOLS, OpClass.POOL), (_ADDS, OpClass.ADD), (_MULS, OpClass.MUL),
    )
    for mapping, op in table:
        if func in mapping:
            return op, mapping[func], 0, 0, 0, (), ()
    for group, op, label in (
        (_SOFTMAX, OpClass.SOFTMAX, "softmax"), (_CATS, OpClass.CONCAT, "concat"), (_PADS, OpClass.PAD, "pad"),
        (_TRANSPOSES, OpClass.TRANSPOSE, "transpose"), (_BATCHNORM, OpClass.OTHER, "batch_norm"),
    ):
        if func in group:
            return op, label, 0, 0, 0, (), ()
    label = getattr(func, "__name__", str(func))
    return OpClass.OTHER, label, 0, 0, 0, (), ()
