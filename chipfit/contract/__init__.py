"""The contract: what the deployed system must hold."""

from chipfit.contract.loader import load_contract, resolve_target
from chipfit.contract.schema import Budgets, Contract, DutyCycle, FieldConditionSpec, InputSpec, SearchSettings

__all__ = ["Budgets", "Contract", "DutyCycle", "FieldConditionSpec", "InputSpec", "SearchSettings",
           "load_contract", "resolve_target"]
