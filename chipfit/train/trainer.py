"""Training on CPU: seeded, explicit thread count, early stopping, resumable across fidelity rungs.

A :class:`Trainer` keeps the model and optimiser between calls to :meth:`Trainer.fit`, so the search can
train a candidate briefly, decide whether it is promising, and continue it (multi-fidelity) without
starting over.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from chipfit.train.recipes import RecipeRunner


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 6
    threads: int = 1
    seed: int = 0
    # False: no early stopping, and the model keeps its last weights (a fixed step budget, for a validation split
    # too small to choose weights by); see chipfit.train.plan
    early_stop: bool = True


@dataclass(frozen=True)
class FitResult:
    val_accuracy: float  # best validation accuracy so far (float model)
    epochs: int  # epochs trained in total
    seconds: float  # training seconds in total
    stopped: str  # "epochs" | "steps" (a fixed step budget, no early stopping) | "early-stop" | "deadline"
    history: tuple[float, ...]
    steps: int = 0  # optimizer steps in total


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 512) -> float:
    """Top-1 accuracy of a torch model on arrays."""
    if len(y) == 0:
        return float("nan")
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            logits = model(torch.from_numpy(x[i:i + batch]))
            correct += int((logits.argmax(1).numpy() == y[i:i + batch]).sum())
    return correct / len(y)


class Trainer:
    """Trains one model; call :meth:`fit` repeatedly with a growing epoch target."""

    def __init__(self, model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                 y_val: np.ndarray, settings: TrainSettings, *, recipe: RecipeRunner | None = None) -> None:
        torch.set_num_threads(max(1, settings.threads))
        self.model = model
        self.s = settings
        self.x, self.y = torch.from_numpy(x_train), torch.from_numpy(y_train)
        self.x_val, self.y_val = x_val, y_val
        self.opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.loss = nn.CrossEntropyLoss()
        self.recipe = recipe  # training recipe (chipfit.train.recipes): sampling order, batch transforms, loss
        self.gen = torch.Generator().manual_seed(settings.seed)
        self.epochs = 0
        self.steps = 0
        self.seconds = 0.0
        self.history: list[float] = []
        self.best_acc = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.since_best = 0

    def fit(self, until_epoch: int, *, until_steps: int = 0, deadline: float | None = None,
            on_epoch: Callable[[int, float], None] | None = None) -> FitResult:
        """Train until ``until_epoch`` epochs and ``until_steps`` optimizer steps in total (whole epochs), early
        stopping on validation accuracy (unless ``settings.early_stop`` is off), or the deadline (a
        ``time.monotonic()`` value). The model keeps its best weights (its last ones without early stopping)."""
        stopped = "epochs"
        n = len(self.y)
        bs = self.s.batch_size
        while self.epochs < until_epoch or self.steps < until_steps:
            if deadline is not None and time.monotonic() > deadline:
                stopped = "deadline"
                break
            if self.s.early_stop and self.since_best >= self.s.patience:
                stopped = "early-stop"
                break
            t0 = time.perf_counter()
            self.model.train()
            order = (self.recipe.order(n, self.gen) if self.recipe is not None
                     else torch.randperm(n, generator=self.gen))
            for i in range(0, n, bs):
                idx = order[i:i + bs]
                if len(idx) < 2:
                    continue
                self.opt.zero_grad(set_to_none=True)
                if self.recipe is not None:
                    loss = self.recipe.step_loss(self.model, self.x[idx], self.y[idx], idx)
                else:
                    loss = self.loss(self.model(self.x[idx]), self.y[idx])
                loss.backward()
                self.opt.step()
                if self.recipe is not None:
                    self.recipe.after_step()
                self.steps += 1
            acc = accuracy(self.model, self.x_val, self.y_val)
            self.seconds += time.perf_counter() - t0
            self.epochs += 1
            self.history.append(acc)
            if acc > self.best_acc:
                self.best_acc, self.since_best = acc, 0
                if self.s.early_stop:
                    self.best_state = copy.deepcopy(self.model.state_dict())
            else:
                self.since_best += 1
            if on_epoch is not None:
                on_epoch(self.epochs, acc)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        if not self.s.early_stop:  # the fixed budget's last weights: report their accuracy, not the best seen
            return FitResult(max(self.history[-1] if self.history else 0.0, 0.0), self.epochs, self.seconds,
                             "steps" if stopped == "epochs" else stopped, tuple(self.history), self.steps)
        return FitResult(max(self.best_acc, 0.0), self.epochs, self.seconds, stopped, tuple(self.history),
                         self.steps)
