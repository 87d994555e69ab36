"""Training recipes for tiny models: one-cycle learning rate, label smoothing, MixUp / CutMix, SpecAugment,
class balancing and distillation targets, resolved from the contract's ``search.recipe`` per modality and data.

A :class:`Recipe` is the resolved, frozen choice (what the record states); a :class:`RecipeRunner` applies it
inside :class:`~chipfit.train.trainer.Trainer`: the order samples are drawn in, what is done to each batch,
the loss, and the learning-rate schedule.

>>> import numpy as np
>>> r = resolve_recipe(RecipeSettings(specaugment="auto"), modality="audio", y_train=np.array([0, 0, 0, 1]),
...                    num_classes=2)
>>> r.specaugment, r.mixup, r.balance, r.one_cycle
(True, 'off', 'loss', True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chipfit.contract.schema import RecipeSettings
from chipfit.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Recipe:
    """A resolved training recipe. ``mixup``: off | mixup | cutmix | mixup+cutmix; ``balance``: off | loss |
    sampler. ``distill_alpha`` is 0 when no teacher is used."""

    one_cycle: bool = False
    one_cycle_peak: float = 3.0  # peak learning rate over the optimizer's base rate
    label_smoothing: float = 0.0
    mixup: str = "off"
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    mix_prob: float = 0.5
    specaugment: bool = False
    balance: str = "off"
    distill_alpha: float = 0.0
    distill_temperature: float = 4.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def plain(self) -> bool:
        """True when the recipe is plain cross-entropy with a constant learning rate."""
        return self == Recipe()


def describe_recipe(recipe: dict[str, Any]) -> str:
    """A recorded recipe (``Recipe.to_dict()``, with the teacher's note when distilled) in words.

    >>> describe_recipe({"one_cycle": True, "label_smoothing": 0.1, "mixup": "cutmix", "balance": "off"})
    'one-cycle learning rate, label smoothing 0.1, cutmix'
    >>> describe_recipe({})
    'plain cross-entropy, constant learning rate'
    """
    words = []
    if recipe.get("one_cycle"):
        words.append("one-cycle learning rate")
    if recipe.get("label_smoothing"):
        words.append(f"label smoothing {recipe['label_smoothing']:g}")
    if recipe.get("mixup", "off") != "off":
        words.append(str(recipe["mixup"]))
    if recipe.get("specaugment"):
        words.append("SpecAugment")
    if recipe.get("balance", "off") != "off":
        words.append(f"class balance by {recipe['balance']}")
    if recipe.get("distill_alpha"):
        teacher = recipe.get("teacher")
        words.append(f"distilled (alpha {recipe['distill_alpha']:g}) from teacher {teacher}" if teacher else
                     "distillation asked but no teacher could be built")
    return ", ".join(words) or "plain cross-entropy, constant learning rate"


def imbalance(y: np.ndarray, num_classes: int) -> float:
    """Largest class count over the smallest (present) one; 1.0 for balanced labels."""
    counts = np.bincount(y, minlength=num_classes)
    counts = counts[counts > 0]
    return float(counts.max() / counts.min()) if len(counts) else 1.0


def resolve_recipe(settings: RecipeSettings | None, *, modality: str, y_train: np.ndarray, num_classes: int,
                   teacher: bool = False) -> Recipe:
    """The recipe ``settings`` (defaults when None) amount to for this modality and these training labels."""
    s = settings or RecipeSettings()
    mixup = s.mixup
    if mixup == "auto":
        mixup = {"image": "mixup+cutmix", "series": "mixup"}.get(modality, "off")
    if "cutmix" in mixup and modality != "image":
        raise ValueError(f"search.recipe.mixup '{s.mixup}' cuts image patches; the input is {modality}")
    spec = s.specaugment == "on" or (s.specaugment == "auto" and modality == "audio")
    if spec and modality != "audio":
        raise ValueError(f"search.recipe.specaugment 'on' masks audio features; the input is {modality}")
    balance = s.balance
    if balance == "auto":
        ratio = imbalance(y_train, num_classes)
        balance = "loss" if ratio >= s.balance_ratio else "off"
    return Recipe(one_cycle=s.one_cycle, one_cycle_peak=float(s.one_cycle_peak),
                  label_smoothing=float(s.label_smoothing), mixup=mixup,
                  mixup_alpha=float(s.mixup_alpha), cutmix_alpha=float(s.cutmix_alpha), mix_prob=float(s.mix_prob),
                  specaugment=spec, balance=balance,
                  distill_alpha=float(s.distill_alpha) if (s.distill and teacher) else 0.0,
                  distill_temperature=float(s.distill_temperature))


def class_weights(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights, mean 1 over the samples (absent classes get weight 0).

    >>> [round(float(v), 3) for v in class_weights(np.array([0, 0, 0, 1]), 2)]
    [0.667, 2.0]
    """
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    w *= len(y) / max(float((w[y]).sum()), 1e-12)
    return w.astype(np.float32)


def soft_targets(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot targets with ``smoothing`` spread evenly over all classes (timm's convention)."""
    off = smoothing / num_classes
    t = torch.full((len(y), num_classes), off)
    t.scatter_(1, y.view(-1, 1), 1.0 - smoothing + off)
    return t


def mixup(x: torch.Tensor, targets: list[torch.Tensor], lam: float, perm: torch.Tensor
          ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """MixUp: ``lam * a + (1 - lam) * b`` for the inputs and for every target matrix."""
    return lam * x + (1 - lam) * x[perm], [lam * t + (1 - lam) * t[perm] for t in targets]


def cutmix(x: torch.Tensor, targets: list[torch.Tensor], lam: float, perm: torch.Tensor, gen: torch.Generator
           ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """CutMix on ``[N, C, H, W]``: a box of about ``1 - lam`` of the area comes from the paired sample; the
    targets mix by the box's actual share."""
    h, w = x.shape[-2], x.shape[-1]
    ch, cw = max(1, round(h * math.sqrt(1 - lam))), max(1, round(w * math.sqrt(1 - lam)))
    cy = int(torch.randint(0, h, (1,), generator=gen))
    cx = int(torch.randint(0, w, (1,), generator=gen))
    y0, y1 = max(cy - ch // 2, 0), min(cy - ch // 2 + ch, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx - cw // 2 + cw, w)
    out = x.clone()
    out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return out, [kept * t + (1 - kept) * t[perm] for t in targets]


def spec_augment(x: torch.Tensor, gen: torch.Generator, *, time_masks: int = 2, time_width: float = 0.15,
                 freq_masks: int = 2, freq_width: float = 0.15) -> torch.Tensor:
    """SpecAugment on features ``[N, C, frames, features]``: per sample, ``time_masks`` bands of up to
    ``time_width`` of the frames and ``freq_masks`` bands of up to ``freq_width`` of the features are set to
    each feature's mean over the sample's frames (MFCCs differ in scale by coefficient, so one value for all
    would put masked coefficients far outside their range)."""
    n, t, f = x.shape[0], x.shape[-2], x.shape[-1]
    keep = torch.ones(n, t, f, dtype=torch.bool)
    for size, count, width, dim in ((t, time_masks, time_width, 1), (f, freq_masks, freq_width, 2)):
        top = max(1, int(size * width))
        for _ in range(count):
            wd = torch.randint(0, top + 1, (n,), generator=gen)
            st = (torch.rand(n, generator=gen) * (size - wd + 1).float()).long()
            pos = torch.arange(size).view(1, -1)
            band = (pos >= st.view(-1, 1)) & (pos < (st + wd).view(-1, 1))  # [n, size]
            keep &= ~(band.unsqueeze(2) if dim == 1 else band.unsqueeze(1))
    level = x.mean(dim=-2, keepdim=True)  # each feature's mean over the sample's frames: masks keep its range
    return torch.where(keep.unsqueeze(1), x, level.expand_as(x))


class RecipeRunner:
    """Applies a :class:`Recipe` in a training loop: :meth:`order`, :meth:`loss`, :meth:`start` (schedule) and
    :meth:`after_step`. ``teacher_logits`` are aligned with the training rows."""

    def __init__(self, recipe: Recipe, y_train: np.ndarray, num_classes: int, *, seed: int = 0,
                 teacher_logits: np.ndarray | None = None) -> None:
        if recipe.distill_alpha > 0 and teacher_logits is None:
            raise ValueError("a recipe with distillation needs the teacher's logits for the training rows")
        if teacher_logits is not None and len(teacher_logits) != len(y_train):
            raise ValueError(f"teacher logits for {len(teacher_logits)} rows; the training set has {len(y_train)}")
        self.recipe = recipe
        self.k = num_classes
        self.gen = torch.Generator().manual_seed(seed + 17)
        self.rng = np.random.default_rng(seed + 17)
        w = class_weights(y_train, num_classes)
        self.sample_w = torch.from_numpy(w[y_train].astype(np.float64))
        self.loss_w = torch.from_numpy(w) if recipe.balance == "loss" else None
        self.teacher = torch.from_numpy(np.asarray(teacher_logits, np.float32)) if teacher_logits is not None else None
        self.sched: torch.optim.lr_scheduler.LRScheduler | None = None
        self.steps = 0
        self.total = 0

    def order(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """The epoch's sample order: a permutation, or a class-balanced draw with replacement (``sampler``)."""
        if self.recipe.balance == "sampler":
            return torch.multinomial(self.sample_w, n, replacement=True, generator=gen)
        return torch.randperm(n, generator=gen)

    def start(self, opt: torch.optim.Optimizer, total_steps: int) -> None:
        """Set up the one-cycle schedule over ``total_steps`` optimizer steps (once; later calls are no-ops): from
        a tenth of the optimizer's rate up to ``one_cycle_peak`` times it in the first quarter, then down."""
        if not self.recipe.one_cycle or self.sched is not None or total_steps < 2:
            return
        lr = opt.param_groups[0]["lr"] * self.recipe.one_cycle_peak
        self.total = total_steps
        self.sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=0.25,
                                                         div_factor=10.0 * self.recipe.one_cycle_peak,
                                                         final_div_factor=100.0)

    def after_step(self) -> None:
        """Advance the schedule; past its planned steps the learning rate stays at its final value."""
        self.steps += 1
        if self.sched is not None and self.steps < self.total:
            self.sched.step()

    def batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The batch as trained on: augmented inputs, target distributions, teacher distributions (or None)."""
        r = self.recipe
        if r.specaugment and x.dim() == 4 and self.rng.random() < r.mix_prob:
            x = spec_augment(x, self.gen, time_masks=1, freq_masks=1)
        targets = [soft_targets(y, self.k, r.label_smoothing)]
        if self.teacher is not None and r.distill_alpha > 0:
            targets.append(F.softmax(self.teacher[idx] / r.distill_temperature, dim=1))
        if r.mixup != "off" and len(y) > 1 and self.rng.random() < r.mix_prob:
            perm = torch.randperm(len(y), generator=self.gen)
            use_cut = r.mixup == "cutmix" or (r.mixup == "mixup+cutmix" and self.rng.random() < 0.5)
            if use_cut and x.dim() == 4:
                x, targets = cutmix(x, targets, float(self.rng.beta(r.cutmix_alpha, r.cutmix_alpha)), perm, self.gen)
            else:
                x, targets = mixup(x, targets, float(self.rng.beta(r.mixup_alpha, r.mixup_alpha)), perm)
        return x, targets[0], (targets[1] if len(targets) > 1 else None)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
        """Soft-target cross-entropy (class-weighted when balancing by loss), plus the distillation term
        ``alpha * T^2 * KL(teacher_T || student_T)``."""
        logp = F.log_softmax(logits, dim=1)
        per = -(target * logp).sum(1)
        if self.loss_w is not None:
            sw = target @ self.loss_w
            hard = (per * sw).sum() / sw.sum().clamp_min(1e-12)
        else:
            hard = per.mean()
        a = self.recipe.distill_alpha
        if teacher is None or a <= 0:
            return hard
        t = self.recipe.distill_temperature
        kl = F.kl_div(F.log_softmax(logits / t, dim=1), teacher, reduction="batchmean") * t * t
        return (1 - a) * hard + a * kl

    def step_loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The loss of one training batch (rows ``idx`` of the training set) under the recipe."""
        xb, target, teacher = self.batch(x, y, idx)
        return self.loss(model(xb), target, teacher)
