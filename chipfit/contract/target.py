"""Resolving a contract's ``target`` (a registered name, a target file, or an inline mapping) and ``runtime``
into a :class:`~chipfit.targets.Target`. Used by the loader (once, while validating) and by
:meth:`Contract.get_target` for a contract changed after loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chipfit.contract.paths import target_path
from chipfit.targets.registry import create_target
from chipfit.targets.target import Target


def resolve_target(contract: Any) -> Target:
    """The contract's Target, with its runtime pinned when the contract names one."""
    spec = contract.target
    if isinstance(spec, dict):
        target = create_target(spec)
    else:
        target = create_target(target_path(spec, Path(contract.base_dir)))
    return target.with_runtime(contract.runtime) if contract.runtime else target

