"""The contract: what the deployed system must hold."""

from chipfit.contract.loader import load_contract
from chipfit.contract.schema import Budgets, Contract, DutyCycle, FieldConditionSpec, InputSpec, SearchSettings
from chipfit.contract.target import resolve_target

__all__ = ["Budgets", "Contract", "DutyCycle", "FieldConditionSpec", "InputSpec", "SearchSettings",
           "load_contract", "resolve_target"]
