"""Ordinary CNNs, as a user might bring them: not drawn from chipfit's search spaces.

Each network is a random stack of plain, depthwise-separable, grouped and residual convolution blocks with
pooling, 1-D or 2-D, kernels 1-7, strides 1-2, inputs up to 128 (2-D) or 2048 (1-D), channel counts that are
often not multiples of 8, and a global-pool or flatten head. It is exported to ONNX and quantized with
``onnxruntime.quantization.quantize_static`` directly, as a user would call it: QDQ or QOperator format,
per-tensor or per-channel weights, int8 or uint8 activations, with or without ORT's pre-processing.

They serve twice: a share of the calibration probes (seed :data:`ORDINARY_CALIBRATION_SEED`), so the fit sees
the op mix of users' own files, and the test set of ``bench/predictor.py`` (another seed), which judges the
predictor on networks no probe was drawn from. Needs torch (the machine that calibrates builds them).

>>> import tempfile
>>> nets = make_ordinary(2, tempfile.mkdtemp(), seed=3)
>>> [n.path.suffix for n in nets], all(n.graph.macs > 0 for n in nets)
(['.onnx', '.onnx'], True)
>>> OrdinaryConfig.from_dict(nets[0].config.to_dict()) == nets[0].config
True
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.graph.opgraph import OpGraph

log = logging.getLogger(__name__)

ORDINARY_CALIBRATION_SEED = 3000  # ordinary probes of `chipfit calibrate`; bench/predictor.py tests on seed 4000
MAX_MACS = 40_000_000  # keeps one inference under ~10 ms on one thread, so calibrating stays affordable
_SIZES_2D = (16, 24, 28, 32, 40, 48, 64, 96, 128)
_LENGTHS_1D = (64, 128, 250, 256, 500, 1000, 1024, 2048)


@dataclass(frozen=True)
class Block:
    """One block: ``kind`` in conv, sep (depthwise k x k + pointwise 1x1), group, res (two k x k convs and an
    identity or 1x1-projection shortcut), maxpool, avgpool."""

    kind: str
    out: int
    k: int
    stride: int
    groups: int = 1
    act: str = "relu"


@dataclass(frozen=True)
class OrdinaryConfig:
    """An ordinary CNN: input ``channels`` x ``size`` (``dims`` 1: a length; 2: a square side), ``blocks``,
    a ``head`` (``gap``: global average pool; ``flatten``) and ``classes`` outputs; ``quant`` says how
    ``quantize_static`` is called on it."""

    dims: int
    channels: int
    size: int
    blocks: tuple[Block, ...]
    head: str
    classes: int
    bn: bool
    quant: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.channels, self.size) if self.dims == 1 else (1, self.channels, self.size, self.size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OrdinaryConfig:
        kw = dict(d)
        kw["blocks"] = tuple(Block(**b) for b in kw["blocks"])
        return cls(**kw)

    @property
    def key(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class OrdinaryNet:
    """A generated network: its int8 ONNX file, op graph (read back from that file) and config."""

    name: str
    path: Path
    graph: OpGraph
    config: OrdinaryConfig


def _channels(rng: random.Random, lo: int, hi: int) -> int:
    """A channel count in [lo, hi]: half the time a multiple of 8, else anything."""
    c = rng.randint(lo, hi)
    return max(lo, c // 8 * 8) if rng.random() < 0.5 and c >= 8 else c


def _macs(cfg: OrdinaryConfig) -> int:
    """Multiply-accumulates of convolutions and the dense head (what decides whether a draw is kept)."""
    c, s, total = cfg.channels, cfg.size, 0
    area = (lambda n: n) if cfg.dims == 1 else (lambda n: n * n)
    tap = (lambda k: k) if cfg.dims == 1 else (lambda k: k * k)
    for b in cfg.blocks:
        so = -(-s // b.stride)
        if b.kind in ("maxpool", "avgpool"):
            s = so
            continue
        if b.kind == "sep":
            total += area(so) * c * tap(b.k) + area(so) * c * b.out
        elif b.kind == "res":
            total += area(so) * b.out * c * tap(b.k) // b.groups + area(so) * b.out * b.out * tap(b.k)
            if b.stride != 1 or c != b.out:
                total += area(so) * b.out * c
        else:
            total += area(so) * b.out * c * tap(b.k) // b.groups
        c, s = b.out, so
    feat = c if cfg.head == "gap" else c * area(s)
    return total + feat * cfg.classes


def sample_ordinary(rng: random.Random) -> OrdinaryConfig:
    """One random ordinary CNN (within :data:`MAX_MACS`)."""
    while True:
        dims = 1 if rng.random() < 0.3 else 2
        if dims == 2:
            size, channels = rng.choice(_SIZES_2D), rng.choice((1, 3, 3, 4))
        else:
            size, channels = rng.choice(_LENGTHS_1D), rng.randint(1, 12)
        blocks: list[Block] = []
        c, s = channels, size
        width = rng.randint(6, 40)
        for i in range(rng.randint(2, 8)):
            kind = "conv" if i == 0 else rng.choice(("conv", "conv", "sep", "sep", "group", "res", "res", "maxpool",
                                                     "avgpool"))
            k = rng.choice((1, 3, 3, 3, 5, 7)) if kind != "conv" or i else rng.choice((3, 3, 5, 7))
            if dims == 1 and kind != "maxpool":
                k = rng.choice((3, 5, 7, 9, 11)) if i == 0 else k
            stride = 2 if (s > 8 and rng.random() < (0.6 if i == 0 and size >= 64 else 0.4)) else 1
            act = rng.choice(("relu", "relu", "relu", "relu6"))
            if kind in ("maxpool", "avgpool"):
                if s < 4:
                    continue
                blocks.append(Block(kind, c, rng.choice((2, 3)), 2))
                s = -(-s // 2)
                continue
            width = min(128, max(4, int(width * rng.choice((1.0, 1.0, 1.5, 2.0)))))
            out = _channels(rng, max(3, width // 2), width) if kind != "res" or stride == 2 else c
            groups = 1
            if kind == "group":
                g = rng.choice((2, 3, 4))
                out = max(g, out // g * g)
                groups = g if c % g == 0 else 1
                if groups == 1:
                    kind = "conv"
            if kind == "res" and k == 1:
                k = 3
            blocks.append(Block(kind, out, k if k <= s else 1, stride, groups, act))
            c, s = out, -(-s // stride)
        head = "gap" if rng.random() < 0.75 or s * (s if dims == 2 else 1) * c > 4096 else "flatten"
        quant = {"format": rng.choice(("QDQ", "QDQ", "QOperator")), "per_channel": rng.random() < 0.5,
                 "activation": rng.choice(("QInt8", "QUInt8")), "preprocess": rng.random() < 0.5}
        cfg = OrdinaryConfig(dims, channels, size, tuple(blocks), head, rng.choice((2, 5, 10, 12)),
                             rng.random() < 0.7, quant)
        if 20_000 <= _macs(cfg) <= MAX_MACS and any(b.kind not in ("maxpool", "avgpool") for b in blocks):
            return cfg


def build_ordinary(cfg: OrdinaryConfig) -> Any:
    """The ``torch.nn.Module`` of ``cfg`` (eval mode, random weights)."""
    import torch
    from torch import nn

    conv = nn.Conv1d if cfg.dims == 1 else nn.Conv2d
    bnorm = nn.BatchNorm1d if cfg.dims == 1 else nn.BatchNorm2d

    def act(name: str) -> nn.Module:
        return nn.ReLU6() if name == "relu6" else nn.ReLU()

    def cba(cin: int, cout: int, k: int, s: int, g: int, a: str | None) -> list[nn.Module]:
        layers: list[nn.Module] = [conv(cin, cout, k, s, padding=k // 2, groups=g, bias=not cfg.bn)]
        if cfg.bn:
            layers.append(bnorm(cout))
        if a:
            layers.append(act(a))
        return layers

    class Residual(nn.Module):
        def __init__(self, cin: int, b: Block) -> None:
            super().__init__()
            self.body = nn.Sequential(*cba(cin, b.out, b.k, b.stride, 1, b.act), *cba(b.out, b.out, b.k, 1, 1, None))
            self.short = (nn.Sequential(*cba(cin, b.out, 1, b.stride, 1, None)) if b.stride != 1 or cin != b.out
                          else nn.Identity())
            self.act = act(b.act)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.body(x) + self.short(x))

    layers: list[nn.Module] = []
    c = cfg.channels
    for b in cfg.blocks:
        if b.kind == "maxpool":
            layers.append((nn.MaxPool1d if cfg.dims == 1 else nn.MaxPool2d)(b.k, b.stride, padding=b.k // 2))
        elif b.kind == "avgpool":
            layers.append((nn.AvgPool1d if cfg.dims == 1 else nn.AvgPool2d)(b.k, b.stride, padding=b.k // 2))
        elif b.kind == "sep":
            layers += cba(c, c, b.k, b.stride, c, b.act) + cba(c, b.out, 1, 1, 1, b.act)
            c = b.out
        elif b.kind == "res":
            layers.append(Residual(c, b))
            c = b.out
        else:
            layers += cba(c, b.out, b.k, b.stride, b.groups, b.act)
            c = b.out
    if cfg.head == "gap":
        layers += [(nn.AdaptiveAvgPool1d if cfg.dims == 1 else nn.AdaptiveAvgPool2d)(1), nn.Flatten()]
        feat = c
    else:
        with torch.no_grad():
            feat = int(nn.Sequential(*layers)(torch.zeros(cfg.input_shape)).numel())
        layers.append(nn.Flatten())
    layers.append(nn.Linear(feat, cfg.classes))
    net = nn.Sequential(*layers).eval()
    gen = torch.Generator().manual_seed(int(cfg.key[:8], 16))
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so folding changes the weights
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net


class _Reader:
    """A ``CalibrationDataReader`` over a few random samples (duck-typed; the module is imported lazily)."""

    def __init__(self, name: str, x: np.ndarray) -> None:
        self.name, self.x, self.i = name, x, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.name: self.x[self.i - 1:self.i]}

    def rewind(self) -> None:
        self.i = 0


@contextlib.contextmanager
def _quiet_root() -> Any:
    """ONNX Runtime's quantizer warns through the root logger (pre-processing advice); hide those while it runs."""
    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.name != "root"

    root, drop = logging.getLogger(), _Drop()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def quantize_user_style(fp32: str | Path, out: str | Path, input_shape: tuple[int, ...], quant: dict[str, Any],
                        seed: int = 0) -> Path:
    """Quantize ``fp32`` to int8 with ``onnxruntime.quantization.quantize_static`` called directly, as a user
    would: ``quant`` gives ``format`` (QDQ / QOperator), ``per_channel``, ``activation`` (QInt8 / QUInt8) and
    ``preprocess`` (run ``quant_pre_process`` first). Weights are int8; ranges by MinMax over 8 random
    samples."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, out = Path(fp32), Path(out)
    src = fp32
    if quant.get("preprocess"):
        src = out.with_name(out.stem + ".pre.onnx")
        quant_pre_process(str(fp32), str(src), skip_symbolic_shape=True)
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(
        "input", np.random.default_rng(seed).standard_normal((8, *input_shape[1:])).astype(np.float32))
    try:
        with contextlib.redirect_stdout(io.StringIO()), _quiet_root():
            quantize_static(str(src), str(out), reader,
                            quant_format=QuantFormat.QOperator if quant.get("format") == "QOperator"
                            else QuantFormat.QDQ,
                            per_channel=bool(quant.get("per_channel")),
                            activation_type=QuantType.QUInt8 if quant.get("activation") == "QUInt8"
                            else QuantType.QInt8, weight_type=QuantType.QInt8)
    finally:
        if src != fp32:
            src.unlink(missing_ok=True)
    return out


def export_fixed(model: Any, input_shape: tuple[int, ...], path: Path) -> Path:
    """Export with a fixed batch of 1 (as most users' exports are), the legacy exporter, opset 17."""
    import warnings

    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(model, (torch.zeros(input_shape),), str(path), dynamo=False, input_names=["input"],
                          output_names=["output"], opset_version=17)
    return path


def ordinary_configs(n: int, seed: int) -> list[OrdinaryConfig]:
    """``n`` distinct configs of the seeded draw."""
    rng = random.Random(seed)
    out: list[OrdinaryConfig] = []
    seen: set[str] = set()
    while len(out) < n:
        cfg = sample_ordinary(rng)
        if cfg.key not in seen:
            seen.add(cfg.key)
            out.append(cfg)
    return out


def make_ordinary(n: int, out_dir: str | Path, *, seed: int = ORDINARY_CALIBRATION_SEED,
                  configs: list[OrdinaryConfig] | None = None, prefix: str = "ordinary",
                  jobs: int | None = None) -> list[OrdinaryNet]:
    """Build ``n`` ordinary CNNs of the ``seed`` draw (or the given ``configs``) as int8 ONNX files in
    ``out_dir``, each read back into an OpGraph.

    The weights are drawn here, in order, from one seeded generator; exporting and quantizing (most of the time)
    run in ``jobs`` processes (default: one per CPU, at most 8; 1 builds in this process). The files do not
    depend on ``jobs``."""
    import torch

    from chipfit.graph.onnx_reader import from_onnx
    from chipfit.measure.buildpool import map_in_processes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfgs = configs if configs is not None else ordinary_configs(n, seed)
    work = []
    for i, cfg in enumerate(cfgs):
        q = cfg.quant
        tag = f"{cfg.dims}d{cfg.size}-{q['format'].lower()}{'-pc' if q['per_channel'] else ''}-{cfg.key[:6]}"
        name = f"{prefix}{i:03d}-{tag}"
        work.append((name, cfg, build_ordinary(cfg).state_dict(), out, seed + i))
    paths = map_in_processes(_export_quantize, work, jobs=jobs)
    nets = []
    for (name, cfg, *_), path in zip(work, paths, strict=True):
        nets.append(OrdinaryNet(name, path, from_onnx(path, name=name), cfg))
        log.debug("ordinary net %s: %d MACs", name, nets[-1].graph.macs)
    return nets


def _export_quantize(name: str, cfg: OrdinaryConfig, state: dict[str, Any], out: Path, seed: int) -> Path:
    """One ordinary net's int8 file from its config and weights (often in a worker process)."""
    module = build_ordinary(cfg)
    module.load_state_dict(state)
    fp = export_fixed(module, cfg.input_shape, out / f"{name}.fp32.onnx")
    with _single_threaded_sessions():
        path = quantize_user_style(fp, out / f"{name}.int8.onnx", cfg.input_shape, cfg.quant, seed=seed)
    fp.unlink()
    return path


@contextlib.contextmanager
def _single_threaded_sessions() -> Any:
    """ONNX Runtime sessions made inside run on one thread. ``quantize_static`` gives no way to set its
    calibration session's threads, and its default (a spinning pool as wide as the machine) costs twice:
    with one build per CPU it nearly halved the gain of building in parallel (200 nets on 2 CPUs: 17.5 s,
    12.6 s with this; 23.6 s serially), and the activation ranges it records depend on the thread count in
    their last bits (float sums split differently), so the same seed gave other files on other machines.
    On one thread, a net's file is the same whatever builds it (tests/measure/test_ordinary.py)."""
    import onnxruntime as ort

    base = ort.SessionOptions

    class OneThread(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.intra_op_num_threads = 1
            self.inter_op_num_threads = 1

    ort.SessionOptions = OneThread
    try:
        yield
    finally:
        ort.SessionOptions = base
