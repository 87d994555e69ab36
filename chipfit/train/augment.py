"""Training augmentation with the contract's field conditions: the same conditions the robustness evaluation
applies, sampled at a severity from each declared range, so a model learns what it will meet in the field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from chipfit.field.conditions import create_condition


def augment(x_raw: np.ndarray, y: np.ndarray, specs: Sequence[Any], *, rate: float, rng: np.random.Generator,
            sample_rate_hz: float | None, chunks: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """An augmented copy of a ``rate`` share of the samples: each gets one declared condition at a severity
    drawn from its declared range (or its fixed severity)."""
    n = round(rate * len(y))
    if n == 0 or not specs:
        return x_raw[:0], y[:0]
    pick = rng.permutation(len(y))[:n]
    which = rng.integers(0, len(specs), size=n)
    xs, ys = [], []
    for k, spec in enumerate(specs):
        d = spec if isinstance(spec, dict) else spec.model_dump()
        idx = pick[which == k]
        cond = create_condition(d["name"], sample_rate_hz=sample_rate_hz)
        for part in np.array_split(idx, chunks):
            if len(part) == 0:
                continue
            sev = float(d["severity"]) if d.get("severity") is not None else float(rng.uniform(*d["range"]))
            xs.append(cond.apply(x_raw[part], sev, rng))
            ys.append(y[part])
    return np.concatenate(xs), np.concatenate(ys)
