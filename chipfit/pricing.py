"""``Pricer``: a config of the search space -> its network and front-end -> its predicted cost on the target.

One object per task x target, used by the search (to judge every sampled candidate before training), by
``check`` and by the report (the winner's per-layer cost): the sequence is written once, here, and every
candidate is costed with its real classifier head (the class count comes from the data).

>>> from chipfit import create_target
>>> from chipfit.contract.schema import InputSpec
>>> from chipfit.space import create_space, reference_config
>>> p = Pricer(create_space(InputSpec(modality="image", shape=[32, 32, 3]), 10), create_target("stm32h743"))
>>> p.price(reference_config("resnet8")).cost.macs
12501632
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chipfit.cost.model import Cost, CostModel
from chipfit.space import ArchConfig, Candidate, SearchSpace
from chipfit.targets.target import Target


@dataclass(frozen=True)
class Priced:
    candidate: Candidate
    cost: Cost


class Pricer:
    """Prices configs of ``space`` on ``target`` with ``cost_model`` (analytical, or a run's calibration)."""

    def __init__(self, space: SearchSpace, target: Target, *, cost_model: CostModel | None = None,
                 dtype: str = "int8") -> None:
        self.space = space
        self.target = target
        self.cost_model = cost_model or CostModel()
        self.dtype = dtype
        self._priced: dict[str, Priced] = {}

    def price(self, config: ArchConfig | dict[str, Any]) -> Priced:
        """Build ``config`` (traced in memory, no file) and estimate its cost with its front-end; each config is
        traced and priced once per Pricer."""
        cfg = config if isinstance(config, ArchConfig) else ArchConfig.from_dict(config)
        if cfg.key not in self._priced:
            cand = self.space.candidate(cfg)
            cost = self.cost_model.estimate(cand.graph, self.target, dtype=self.dtype,
                                            frontend_ops=cand.frontend_ops, frontend_ram_bytes=cand.frontend_ram_bytes)
            self._priced[cfg.key] = Priced(cand, cost)
        return self._priced[cfg.key]

    def network_cost(self, config: ArchConfig | dict[str, Any]) -> Cost:
        """The network alone (what a model file holds: no front-end), as measured runtimes see it."""
        cfg = config if isinstance(config, ArchConfig) else ArchConfig.from_dict(config)
        return self.cost_model.estimate(self.space.candidate(cfg).graph, self.target, dtype=self.dtype)
