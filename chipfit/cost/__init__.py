"""Cost model: arena planning, the analytical per-node model, battery life."""

from chipfit.cost.arena import ArenaPlan, Buffer, plan
from chipfit.cost.model import Cost, CostModel, LayerCost

__all__ = ["ArenaPlan", "Buffer", "Cost", "CostModel", "LayerCost", "plan"]
