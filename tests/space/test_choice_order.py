"""Every parameter's choices are listed cheapest first: ``SearchSpace.smallest`` (what ``chipfit check`` prices
as a family's cheapest config) and the warm start's shrinking and growing (chipfit.search.warmstart) rely on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chipfit.contract.schema import InputSpec
from chipfit.space import ArchConfig, create_space

REPO = Path(__file__).resolve().parents[2]
# a representation, not a size: 0 runs the network over the raw window, > 0 over that many spectral bands
UNORDERED = {"spectral_bands"}


def _inputs() -> dict[str, InputSpec]:
    out = {}
    for example in sorted((REPO / "examples").glob("*.yaml")):
        doc = yaml.safe_load(example.read_text())
        out[example.stem] = InputSpec.model_validate(doc["task"].get("input") or {"modality": "image",
                                                                                   "shape": [8, 8, 1]})
    return out


def _ops(space, cfg: ArchConfig) -> int:
    c = space.candidate(cfg)
    return c.graph.macs + c.frontend_ops


@pytest.mark.parametrize(("name", "spec"), list(_inputs().items()), ids=list(_inputs()))
def test_each_choice_costs_at_least_the_one_before_it(name: str, spec: InputSpec):
    space = create_space(spec, 4)
    # each parameter varied alone, the others at their first and at their last choice (some choices only matter
    # beside others: a second downsampling block needs a second block)
    largest = [ArchConfig(f, {k: v[-1] for k, v in choices.items()}) for f, choices in space.families.items()]
    for base in [*space.smallest(), *largest]:
        for key, choices in space.families[base.family].items():
            if key in UNORDERED:
                continue
            ops = [_ops(space, ArchConfig(base.family, {**base.params, key: v})) for v in choices]
            assert ops == sorted(ops), (f"{name}: {base.family}.{key} choices {choices} cost {ops} operations "
                                        f"beside {base.params}; list them cheapest first")
