"""Devices: the Target record, the registry of built-in profiles, and target files."""

from chipfit.targets.registry import create_target, list_targets, load_target_file, register_target
from chipfit.targets.target import Accelerator, Target

__all__ = ["Accelerator", "Target", "create_target", "list_targets", "load_target_file", "register_target"]
