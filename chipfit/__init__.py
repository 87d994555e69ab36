"""chipfit: constraint-first edge AI. State the deployment budgets; get models that hold them.

The public names below are imported lazily, so ``import chipfit.runtime`` on a device pulls in numpy, scipy,
pydantic and the inference runtime only.

>>> import chipfit
>>> "stm32h743" in chipfit.list_targets("stm32*")
True
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CheckReport": "chipfit.check", "check_contract": "chipfit.check",
    "Contract": "chipfit.contract", "load_contract": "chipfit.contract",
    "Cost": "chipfit.cost", "CostModel": "chipfit.cost",
    "ChipfitError": "chipfit.errors", "ContractError": "chipfit.errors", "GraphError": "chipfit.errors",
    "TargetError": "chipfit.errors",
    "OpGraph": "chipfit.graph", "from_onnx": "chipfit.graph", "from_tflite": "chipfit.graph",
    "from_torch": "chipfit.graph", "load_graph": "chipfit.graph",
    "ProfileReport": "chipfit.profiling", "profile": "chipfit.profiling",
    "Run": "chipfit.run", "create_run": "chipfit.run", "load_run": "chipfit.run",
    "Target": "chipfit.targets", "create_target": "chipfit.targets", "list_targets": "chipfit.targets",
    "register_target": "chipfit.targets",
    "Predictor": "chipfit.runtime",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'chipfit' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
