"""Network families that MCU runtimes run natively, built from plain parameters.

Each family is registered by name; ``build_family(config, in_channels, num_classes, dims)`` returns a
``torch.nn.Module`` whose input is ``[1, C, H, W]`` (dims=2) or ``[1, C, T]`` (dims=1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from chipfit.naming import did_you_mean
from chipfit.space.config import ArchConfig

Builder = Callable[[Mapping[str, Any], int, int, int, tuple[int, ...]], nn.Module]
FAMILIES: dict[str, Builder] = {}


def register_family(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        FAMILIES[name] = fn
        return fn

    return deco


def build_family(config: ArchConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the module for ``config``; ``in_shape`` is the network input (batch first, channels second)."""
    if config.family not in FAMILIES:
        raise KeyError(f"unknown architecture family '{config.family}'.{did_you_mean(config.family, FAMILIES)}")
    return FAMILIES[config.family](config.params, in_shape[1], num_classes, len(in_shape) - 2, tuple(in_shape[2:]))


def kernel(value: Any, dims: int) -> tuple[int, ...]:
    """A kernel size from an int or a string like ``"10x4"``."""
    if isinstance(value, str):
        parts = tuple(int(x) for x in value.lower().split("x"))
    elif isinstance(value, list | tuple):
        parts = tuple(int(x) for x in value)
    else:
        parts = (int(value),)
    return parts * dims if len(parts) == 1 else parts


def same_pad(size: int, k: int, s: int) -> int:
    """Symmetric padding that gives TF 'SAME' output size ceil(size / s) (the extra row is dropped)."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return -(-total // 2)


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv1d if dims == 1 else nn.Conv2d


def _bn(dims: int) -> type[nn.Module]:
    return nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d


def conv_bn(cin: int, cout: int, k: Any, stride: int, dims: int, groups: int = 1, act: bool = True,
            pad: Any = None) -> nn.Sequential:
    k = kernel(k, dims)
    pad = tuple(x // 2 for x in k) if pad is None else pad
    layers: list[nn.Module] = [_conv(dims)(cin, cout, k, stride, pad, groups=groups, bias=False), _bn(dims)(cout)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _Head(nn.Module):
    def __init__(self, cin: int, num_classes: int, dims: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


@register_family("dscnn")
def dscnn(p: Mapping[str, Any], cin: int, num_classes: int, dims: int, size: tuple[int, ...]) -> nn.Module:
    """Depthwise-separable CNN (MLPerf Tiny KWS DS-CNN shape): stem conv, N x (dw k x k, pw 1x1)."""
    width, blocks, k = int(p["width"]), int(p["blocks"]), int(p.get("kernel", 3))
    stem_k = kernel(p.get("stem_kernel", 3), dims)
    st = int(p.get("stem_stride", 2))
    pad = tuple(same_pad(n, kk, st) for n, kk in zip(size, stem_k, strict=True))
    layers: list[nn.Module] = [conv_bn(cin, width, stem_k, st, dims, pad=pad)]
    downs = int(p.get("downsample", 0))
    for i in range(blocks):
        s = 2 if i < downs else 1
        layers += [conv_bn(width, width, k, s, dims, groups=width), conv_bn(width, width, 1, 1, dims)]
    return nn.Sequential(*layers, _Head(width, num_classes, dims))


_MBV1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
         (512, 1), (1024, 2), (1024, 1)]


@register_family("mobilenetv1")
def mobilenetv1(p: Mapping[str, Any], cin: int, num_classes: int, dims: int, size: tuple[int, ...]) -> nn.Module:
    """MobileNetV1 with width multiplier ``alpha`` truncated to ``blocks`` depthwise-separable blocks."""
    alpha, blocks = float(p["alpha"]), int(p.get("blocks", 13))
    c = max(8, int(32 * alpha))
    layers: list[nn.Module] = [conv_bn(cin, c, 3, 2, dims)]
    for cout, s in _MBV1[:blocks]:
        co = max(8, int(cout * alpha))
        layers += [conv_bn(c, c, 3, s, dims, groups=c), conv_bn(c, co, 1, 1, dims)]
        c = co
    return nn.Sequential(*layers, _Head(c, num_classes, dims))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int, dims: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1, 1, dims))
        layers += [conv_bn(hidden, hidden, k, stride, dims, groups=hidden),
                   conv_bn(hidden, cout, 1, 1, dims, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


@register_family("mbv2")
def mbv2(p: Mapping[str, Any], cin: int, num_classes: int, dims: int, size: tuple[int, ...]) -> nn.Module:
    """Inverted-residual stack (MobileNetV2 / MCUNet style)."""
    width, blocks, expand, k = int(p["width"]), int(p["blocks"]), int(p["expand"]), int(p.get("kernel", 3))
    downs = int(p.get("downsample", 2))
    c = int(p.get("stem", width))
    layers: list[nn.Module] = [conv_bn(cin, c, 3, 2, dims)]
    for i in range(blocks):
        s = 2 if 0 < i <= downs else 1
        co = width * (2 if i > blocks // 2 else 1)
        layers.append(_InvertedResidual(c, co, expand, k, s, dims))
        c = co
    return nn.Sequential(*layers, _Head(c, num_classes, dims))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dims: int) -> None:
        super().__init__()
        self.a = conv_bn(cin, cout, 3, stride, dims)
        self.b = conv_bn(cout, cout, 3, 1, dims, act=False)
        self.short = conv_bn(cin, cout, 1, stride, dims, act=False) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.short is None else self.short(x)
        return torch.relu(self.b(self.a(x)) + s)


@register_family("resnet")
def resnet(p: Mapping[str, Any], cin: int, num_classes: int, dims: int, size: tuple[int, ...]) -> nn.Module:
    """ResNet with one basic block per stage (MLPerf Tiny IC ResNet-8 is widths [16, 32, 64]): the stage widths
    as ``widths``, or as ``width``, ``width2``, ``width3`` (how the image space searches them)."""
    widths = [int(w) for w in p["widths"]] if "widths" in p else \
        [int(p[k]) for k in ("width", "width2", "width3") if k in p]
    layers: list[nn.Module] = [conv_bn(cin, widths[0], 3, 1, dims)]
    c = widths[0]
    for i, w in enumerate(widths):
        layers.append(_BasicBlock(c, w, 1 if i == 0 else 2, dims))
        c = w
    return nn.Sequential(*layers, _Head(c, num_classes, dims))


@register_family("cnn")
def cnn(p: Mapping[str, Any], cin: int, num_classes: int, dims: int, size: tuple[int, ...]) -> nn.Module:
    """Plain conv stack: ``blocks`` x (conv k, BN, ReLU), widths doubling at each stride-2 block."""
    width, blocks, k = int(p["width"]), int(p["blocks"]), int(p.get("kernel", 3))
    stride = int(p.get("stride", 2))
    layers: list[nn.Module] = []
    c = cin
    for i in range(blocks):
        co = width * (2 ** min(i, 3)) if stride > 1 else width
        layers.append(conv_bn(c, co, k, stride if i < int(p.get("downsample", blocks)) else 1, dims))
        c = co
    return nn.Sequential(*layers, _Head(c, num_classes, dims))
