"""A cheap generator of random int8 ``.tflite`` models shaped like chipfit's search spaces (conv / depthwise stacks
with stride-2 downsampling, residual adds, pooling, a reshape + fully-connected + softmax head), written with the
flatbuffer schema that ships with ``tflite-micro`` (no converter, milliseconds per model)."""

from __future__ import annotations

import random

import flatbuffers
import numpy as np


def _schema():  # the generated flatbuffer module
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    return s


class _Builder:
    def __init__(self) -> None:
        s = _schema()
        self.s = s
        self.tensors: list = []
        self.buffers = [s.BufferT()]
        self.ops: list = []
        self.codes: list[int] = []

    def tensor(self, shape: tuple[int, ...], ttype: int, scale: list[float], zp: list[int], data: bytes | None = None,
               qdim: int = 0) -> int:
        s = self.s
        t = s.TensorT()
        t.shape = list(shape)
        t.type = ttype
        t.name = f"t{len(self.tensors)}".encode()
        if scale:
            q = s.QuantizationParametersT()
            q.scale = scale
            q.zeroPoint = zp
            q.quantizedDimension = qdim
            t.quantization = q
        b = s.BufferT()
        if data is not None:
            b.data = np.frombuffer(data, dtype=np.uint8).tolist()
        self.buffers.append(b)
        t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def act(self, shape: tuple[int, ...], rng: random.Random) -> int:
        return self.tensor(shape, self.s.TensorType.INT8, [rng.uniform(0.01, 0.1)], [rng.randint(-20, 20)])

    def op(self, code: int, ins: list[int], outs: list[int], opt_type: int = 0, opts: object = None) -> None:
        s = self.s
        if code not in self.codes:
            self.codes.append(code)
        o = s.OperatorT()
        o.opcodeIndex = self.codes.index(code)
        o.inputs, o.outputs = ins, outs
        o.builtinOptionsType = opt_type
        o.builtinOptions = opts
        self.ops.append(o)

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        s = self.s
        sg = s.SubGraphT()
        sg.tensors, sg.inputs, sg.outputs, sg.operators = self.tensors, inputs, outputs, self.ops
        m = s.ModelT()
        m.version = 3
        m.subgraphs = [sg]
        m.buffers = self.buffers
        codes = []
        for c in self.codes:
            oc = s.OperatorCodeT()
            oc.builtinCode = c
            oc.deprecatedBuiltinCode = min(c, 127)
            oc.version = 1
            codes.append(oc)
        m.operatorCodes = codes
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def random_model(seed: int) -> bytes:
    """One random int8 model; ``seed`` picks the architecture."""
    s = _schema()
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    b = _Builder()
    op_codes = s.BuiltinOperator
    h = w = rng.choice([8, 12, 16, 24, 32])
    c = rng.choice([1, 3])
    x = b.act((1, h, w, c), rng)
    inp = x
    same: dict[tuple[int, ...], int] = {}
    for _ in range(rng.randint(1, 7)):
        kind = rng.choice(["conv", "conv", "dw", "pool", "add"])
        if kind == "add":
            shape = tuple(b.tensors[x].shape)
            if shape in same and same[shape] != x:
                y = b.act(shape, rng)
                opts = s.AddOptionsT()
                b.op(op_codes.ADD, [same[shape], x], [y], s.BuiltinOptions.AddOptions, opts)
                x = y
            continue
        stride = rng.choice([1, 1, 2]) if min(h, w) >= 4 else 1
        k = rng.choice([1, 3, 5]) if kind == "conv" else rng.choice([3, 5])
        padding = rng.choice([s.Padding.SAME, s.Padding.VALID]) if k <= min(h, w) else s.Padding.SAME
        oh = -(-h // stride) if padding == s.Padding.SAME else (h - k) // stride + 1
        ow = -(-w // stride) if padding == s.Padding.SAME else (w - k) // stride + 1
        if kind == "pool":
            opts = s.Pool2DOptionsT()
            opts.padding, opts.strideH, opts.strideW = padding, stride, stride
            opts.filterHeight = opts.filterWidth = k
            q = b.tensors[x].quantization
            y = b.tensor((1, oh, ow, c), s.TensorType.INT8, list(q.scale), list(q.zeroPoint))
            code = rng.choice([op_codes.AVERAGE_POOL_2D, op_codes.MAX_POOL_2D])
            b.op(code, [x], [y], s.BuiltinOptions.Pool2DOptions, opts)
        else:
            cout = c if kind == "dw" else rng.choice([4, 8, 12, 16, 24])
            wshape = (cout, k, k, c) if kind == "conv" else (1, k, k, cout)
            wt = b.tensor(wshape, s.TensorType.INT8, [0.02] * cout, [0] * cout,
                          nrng.integers(-127, 127, size=int(np.prod(wshape)), dtype=np.int8).tobytes(),
                          qdim=0 if kind == "conv" else 3)
            in_scale = b.tensors[x].quantization.scale[0]
            bt = b.tensor((cout,), s.TensorType.INT32, [in_scale * 0.02] * cout, [0] * cout,
                          nrng.integers(-1000, 1000, size=cout, dtype=np.int32).tobytes())
            y = b.act((1, oh, ow, cout), rng)
            if kind == "conv":
                opts = s.Conv2DOptionsT()
                typ, code = s.BuiltinOptions.Conv2DOptions, op_codes.CONV_2D
            else:
                opts = s.DepthwiseConv2DOptionsT()
                opts.depthMultiplier = 1
                typ, code = s.BuiltinOptions.DepthwiseConv2DOptions, op_codes.DEPTHWISE_CONV_2D
            opts.padding, opts.strideH, opts.strideW = padding, stride, stride
            opts.dilationHFactor = opts.dilationWFactor = 1
            opts.fusedActivationFunction = rng.choice([0, 1, 3])
            b.op(code, [x, wt, bt], [y], typ, opts)
            c = cout
        x, h, w = y, oh, ow
        same[tuple(b.tensors[x].shape)] = x
    # head: reshape to [1, features], fully connected, softmax
    feats = h * w * c
    shape_t = b.tensor((2,), s.TensorType.INT32, [], [], np.array([1, feats], dtype=np.int32).tobytes())
    q = b.tensors[x].quantization
    flat = b.tensor((1, feats), s.TensorType.INT8, list(q.scale), list(q.zeroPoint))
    ro = s.ReshapeOptionsT()
    ro.newShape = [1, feats]
    b.op(op_codes.RESHAPE, [x, shape_t], [flat], s.BuiltinOptions.ReshapeOptions, ro)
    classes = rng.choice([2, 4, 10, 12])
    wt = b.tensor((classes, feats), s.TensorType.INT8, [0.02], [0],
                  nrng.integers(-127, 127, size=classes * feats, dtype=np.int8).tobytes())
    bt = b.tensor((classes,), s.TensorType.INT32, [q.scale[0] * 0.02], [0],
                  nrng.integers(-1000, 1000, size=classes, dtype=np.int32).tobytes())
    logits = b.act((1, classes), rng)
    b.op(op_codes.FULLY_CONNECTED, [flat, wt, bt], [logits], s.BuiltinOptions.FullyConnectedOptions,
         s.FullyConnectedOptionsT())
    probs = b.tensor((1, classes), s.TensorType.INT8, [1 / 256], [-128])
    so = s.SoftmaxOptionsT()
    so.beta = 1.0  # TFLM aborts (a CHECK in the multiplier maths) on the default beta of 0
    b.op(op_codes.SOFTMAX, [logits], [probs], s.BuiltinOptions.SoftmaxOptions, so)
    return b.finish([inp], [probs])
