"""Quantization-aware fine-tuning (QAT) with PyTorch fake quantization, for the int8 path chipfit ships.

chipfit's int8 model comes from ONNX Runtime's static quantization of the float ONNX export
(:func:`chipfit.quantize.int8.quantize_int8`: QDQ, per-channel symmetric int8 weights, per-tensor int8
activations with MinMax ranges). QAT here fine-tunes the float model for a few epochs while its forward pass
sees that quantization:

- every Conv / Linear weight is fake-quantized per output channel, symmetric, to 8 bits
  (``torch.fake_quantize_per_channel_affine``, straight-through gradients). A BatchNorm after a convolution
  scales each output channel, so this is the same grid ONNX Runtime uses after folding it;
- activations (the input, and the outputs of BatchNorm, ReLU, pooling and Linear layers) pass through
  ``torch.ao.quantization.FakeQuantize`` with moving-average min/max ranges (per tensor, int8);
- BatchNorm statistics are frozen (its layers stay in eval mode), as QAT recipes do.

The result is a plain model of the same architecture whose weights lie on their int8 grid, so ONNX Runtime's
re-quantization reproduces them exactly; it then takes the *same* export, quantization and ONNX Runtime
measurement as any candidate.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver
from torch.nn.utils import parametrize

from chipfit.logging import get_logger
from chipfit.train.trainer import accuracy

log = get_logger(__name__)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
_ACTIVATIONS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


class WeightFakeQuant(nn.Module):
    """Per-output-channel symmetric int8 fake quantization of a weight (scale = max |w| / 127)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, w.dim()))
        scale = (w.detach().abs().amax(dim=dims) / 127.0).clamp_min(1e-12)
        zero = torch.zeros(w.shape[0], dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


def _act_fq() -> FakeQuantize:
    return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                        qscheme=torch.per_tensor_affine, reduce_range=False)


class FakeQuantized:
    """Context manager: ``model`` with fake quantization on its weights and activations (removed on exit; the
    weights are left at their quantized values)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.weighted: list[nn.Module] = []
        self.fq: dict[str, FakeQuantize] = {}

    def __enter__(self) -> FakeQuantized:
        m = self.model
        for name, mod in m.named_modules():
            if isinstance(mod, _WEIGHTED):
                parametrize.register_parametrization(mod, "weight", WeightFakeQuant())
                self.weighted.append(mod)
            if isinstance(mod, _ACTIVATIONS):
                fq = self.fq[name] = _act_fq()
                self.handles.append(mod.register_forward_hook(lambda _m, _i, out, fq=fq: fq(out)))
        fq_in = self.fq["<input>"] = _act_fq()
        self.handles.append(m.register_forward_pre_hook(lambda _m, args, fq=fq_in: (fq(args[0]), *args[1:])))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        for mod in self.weighted:
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)

    def freeze_ranges(self) -> None:
        """Stop updating the activation ranges (keep fake-quantizing with the current ones)."""
        for fq in self.fq.values():
            fq.disable_observer()


@dataclass(frozen=True)
class QatResult:
    """What fine-tuning did: fake-quantized validation accuracy before and after (the int8 path measures the
    exported model separately), epochs, seconds."""

    val_before: float
    val_after: float
    epochs: int
    seconds: float


def _train_mode(model: nn.Module) -> None:
    model.train()
    for mod in model.modules():
        if isinstance(mod, _BN):
            mod.eval()  # frozen statistics


def qat_finetune(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 *, epochs: int = 4, lr: float = 3e-4, batch_size: int = 64, seed: int = 0,
                 loss_fn: nn.Module | None = None) -> tuple[nn.Module, QatResult]:
    """Fine-tune a copy of ``model`` with fake quantization for ``epochs``; returns the copy with the weights of
    its best epoch (by fake-quantized validation accuracy, the starting point included), on the int8 grid."""
    t0 = time.perf_counter()
    m = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed + 31)
    x, y = torch.from_numpy(np.ascontiguousarray(x_train, np.float32)), torch.from_numpy(y_train)
    loss_fn = loss_fn or nn.CrossEntropyLoss(label_smoothing=0.0)
    with FakeQuantized(m) as fq:
        m.eval()
        with torch.no_grad():  # set the activation ranges from training data before the first step
            for i in range(0, min(len(y), 8 * batch_size), batch_size):
                for q in fq.fq.values():
                    q.train()
                m(x[i:i + batch_size])
        before = accuracy(m, x_val, y_val)
        best, best_state, done = before, copy.deepcopy(m.state_dict()), 0
        params = [p for mod in m.modules() if not isinstance(mod, _BN) for p in mod.parameters(recurse=False)]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        steps = epochs * max(1, -(-len(y) // batch_size))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
        for ep in range(epochs):
            if ep == epochs - 1 and epochs > 1:
                fq.freeze_ranges()
            _train_mode(m)
            order = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), batch_size):
                idx = order[i:i + batch_size]
                if len(idx) < 2:
                    continue
                opt.zero_grad(set_to_none=True)
                loss_fn(m(x[idx]), y[idx]).backward()
                opt.step()
                sched.step()
            done += 1
            acc = accuracy(m, x_val, y_val)
            if acc > best:
                best, best_state = acc, copy.deepcopy(m.state_dict())
        m.load_state_dict(best_state)
    m.eval()
    res = QatResult(before, best, done, time.perf_counter() - t0)
    log.info("QAT: fake-quantized validation accuracy %.3f -> %.3f in %d epochs (%.1f s)", before, best, done,
             res.seconds)
    return m, res
