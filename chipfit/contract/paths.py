"""The contract's path rules, in one place: a relative path in a contract is relative to the contract file's
folder (or the ``base_dir`` given to :func:`~chipfit.load_contract`), and a loaded contract holds it absolute.

Paths: ``task.data.path``, every ``measure.agents[].token_file``, and ``target`` when it names a target file
(it ends in ``.yaml``/``.yml`` or contains a ``/``).

>>> from pathlib import Path
>>> resolve_paths({"task": {"data": {"path": "d.npz"}}, "target": "rpi4"}, Path("/w"))["task"]["data"]["path"]
'/w/d.npz'
>>> target_path("boards/my.yaml", Path("/w"))
PosixPath('/w/boards/my.yaml')
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any


def is_target_file(spec: str) -> bool:
    """A ``target:`` string names a file (not a registered device) when it ends in .yaml/.yml or has a ``/``."""
    return spec.endswith((".yaml", ".yml")) or "/" in spec


def absolute(path: str | Path, base: Path) -> Path:
    """``path`` made absolute against ``base`` (normalised, symlinks kept)."""
    p = Path(path).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else Path(base).absolute() / p))


def target_path(spec: str, base: Path) -> str | Path:
    """A registered name unchanged; a target file's path made absolute."""
    return absolute(spec, base) if is_target_file(spec) else spec


def resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy of a contract mapping with every path made absolute (values of the wrong type are left for
    validation to report)."""
    out = copy.deepcopy(data)
    d = (out.get("task") or {}).get("data") if isinstance(out.get("task"), dict) else None
    if isinstance(d, dict) and isinstance(d.get("path"), str) and d["path"]:
        d["path"] = str(absolute(d["path"], base))
    m = out.get("measure")
    for agent in (m.get("agents") or []) if isinstance(m, dict) else []:
        if isinstance(agent, dict) and isinstance(agent.get("token_file"), str) and agent["token_file"]:
            agent["token_file"] = str(absolute(agent["token_file"], base))
    if isinstance(out.get("target"), str) and is_target_file(out["target"]):
        out["target"] = str(absolute(out["target"], base))
    return out
