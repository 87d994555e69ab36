"""How long to train a candidate, in optimizer steps, and whether its validation split can steer the training.

A budget in epochs alone starves a small training set: 30 windows at batch 64 are one step per epoch, so
"25 epochs" is 25 gradient steps. The plan therefore states the budget in steps:

- the batch is at most a quarter of the training set (at least 8 samples), so an epoch has a few steps;
- an epoch of the budget is at least ``search.min_epoch_steps`` optimizer steps (several passes over a small
  set), so the full budget is at least ``epochs x min_epoch_steps`` steps and the rung-1 budget
  ``rung_epochs x min_epoch_steps``;
- early stopping (and keeping the weights of the best validation epoch) and rung-1 pruning need a validation
  split of at least ``search.early_stop_min_val`` samples and 5 per class: with fewer, one sample moves the
  accuracy by several points and the "best epoch" or "below the median" is noise. Below that size the candidate
  trains its fixed step budget without early stopping or pruning, and keeps its last weights.

>>> from chipfit.contract.schema import SearchSettings
>>> p = plan_training(34, 6, 4, SearchSettings(epochs=25, rung_epochs=5))
>>> p.batch_size, p.steps_per_epoch, p.epochs, p.rung_epochs, p.steps, p.early_stop
(9, 4, 100, 20, 400, False)
>>> plan_training(1200, 200, 10, SearchSettings(epochs=25)).epochs
25
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chipfit.contract.schema import SearchSettings

MIN_BATCH = 8
VAL_PER_CLASS = 5  # early stopping also needs this many validation samples per class


@dataclass(frozen=True)
class TrainingPlan:
    """The budget one candidate trains under (see the module docstring for the rule)."""

    batch_size: int
    steps_per_epoch: int  # optimizer steps in one pass over the training set
    epochs: int  # full budget, in passes
    rung_epochs: int  # rung-1 budget, in passes
    early_stop: bool  # early stopping on validation accuracy, best weights kept, rung-1 pruning allowed
    n_train: int
    n_val: int
    min_val: int  # the validation size early stopping needs

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def rung_steps(self) -> int:
        return self.rung_epochs * self.steps_per_epoch

    def describe(self) -> str:
        """The rule as applied, for a record's reason."""
        base = f"budget {self.steps} steps = {self.epochs} epochs x {self.steps_per_epoch} steps of batch " \
               f"{self.batch_size} on {self.n_train} training samples"
        if self.early_stop:
            return f"{base}; early stopping on {self.n_val} validation samples"
        return (f"{base}; no early stopping or pruning: {self.n_val} validation samples < {self.min_val} "
                "needed, so the fixed step budget is trained and the last weights kept")


def _steps(n: int, batch: int) -> int:
    """Steps in one pass (a last batch of one sample is skipped, as the trainer does)."""
    full, rest = divmod(n, batch)
    return max(1, full + (1 if rest >= 2 else 0))


def plan_training(n_train: int, n_val: int, num_classes: int, settings: SearchSettings) -> TrainingPlan:
    """The training plan for ``n_train`` training and ``n_val`` validation samples under ``settings``."""
    batch = max(1, min(settings.batch_size, max(MIN_BATCH, math.ceil(n_train / 4))))
    per_pass = _steps(n_train, batch)
    scale = max(1, math.ceil(settings.min_epoch_steps / per_pass)) if settings.min_epoch_steps else 1
    rung = min(settings.rung_epochs, settings.epochs)
    min_val = max(settings.early_stop_min_val, VAL_PER_CLASS * num_classes)
    return TrainingPlan(batch_size=batch, steps_per_epoch=per_pass, epochs=settings.epochs * scale,
                        rung_epochs=rung * scale, early_stop=n_val >= min_val, n_train=n_train, n_val=n_val,
                        min_val=min_val)
