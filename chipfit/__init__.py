"""chipfit: constraint-first edge AI. State the deployment budgets; get models that hold them.

>>> import chipfit
>>> "stm32h743" in chipfit.list_targets("stm32*")
True
"""

from chipfit.check import CheckReport, check_contract
from chipfit.contract import Contract, load_contract
from chipfit.cost import Cost, CostModel
from chipfit.errors import ChipfitError, ContractError, GraphError, TargetError
from chipfit.graph import OpGraph, from_onnx, from_tflite, from_torch, load_graph
from chipfit.profiling import ProfileReport, profile
from chipfit.run import Run, create_run, load_run
from chipfit.targets import Target, create_target, list_targets, register_target

__version__ = "0.1.0"

__all__ = [
    "CheckReport",
    "ChipfitError",
    "Contract",
    "ContractError",
    "Cost",
    "CostModel",
    "GraphError",
    "OpGraph",
    "ProfileReport",
    "Run",
    "Target",
    "TargetError",
    "__version__",
    "check_contract",
    "create_run",
    "create_target",
    "from_onnx",
    "from_tflite",
    "from_torch",
    "list_targets",
    "load_contract",
    "load_graph",
    "load_run",
    "profile",
    "register_target",
]
