"""Robustness under the contract's field conditions: accuracy per condition x severity, seeded.

A condition declared with ``severity: s`` is evaluated at ``s``; one declared with ``range: [lo, hi]`` at
``lo``, the midpoint and ``hi``. Case ``i`` (in declaration order) draws its randomness from
``numpy.random.default_rng((seed, i))``, so any figure can be reproduced by hand:

>>> cases = field_cases([{"name": "brightness", "range": [0.6, 1.4]}])
>>> [(c.condition, c.severity) for c in cases]
[('brightness', 0.6), ('brightness', 1.0), ('brightness', 1.4)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chipfit.field.conditions import create_condition


@dataclass(frozen=True)
class FieldCase:
    index: int
    condition: str
    severity: float

    def rng(self, seed: int) -> np.random.Generator:
        return np.random.default_rng((seed, self.index))


def field_cases(specs: Sequence[Any]) -> list[FieldCase]:
    """The evaluation grid of a contract's ``field`` list (pydantic specs or plain mappings)."""
    out: list[FieldCase] = []
    for spec in specs:
        d = spec if isinstance(spec, dict) else spec.model_dump()
        if d.get("severity") is not None:
            levels = [float(d["severity"])]
        else:
            lo, hi = (float(v) for v in d["range"])
            levels = [lo, (lo + hi) / 2, hi] if hi > lo else [lo]
        for s in levels:
            out.append(FieldCase(len(out), d["name"], s))
    return out


def apply_case(case: FieldCase, x_raw: np.ndarray, *, seed: int, sample_rate_hz: float | None) -> np.ndarray:
    return create_condition(case.condition, sample_rate_hz=sample_rate_hz).apply(x_raw, case.severity, case.rng(seed))


def evaluate_field(predict: Callable[[np.ndarray], np.ndarray], x_raw: np.ndarray, y: np.ndarray,
                   cases: Sequence[FieldCase], *, seed: int, sample_rate_hz: float | None) -> list[dict[str, Any]]:
    """Accuracy of ``predict`` (raw batch -> class indices) under every case."""
    rows = []
    for case in cases:
        xc = apply_case(case, x_raw, seed=seed, sample_rate_hz=sample_rate_hz)
        acc = float((predict(xc) == y).mean()) if len(y) else float("nan")
        rows.append({"condition": case.condition, "severity": case.severity, "accuracy": acc})
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    accs = [r["accuracy"] for r in rows]
    return {"mean": float(np.mean(accs)) if accs else None, "worst": float(np.min(accs)) if accs else None}
