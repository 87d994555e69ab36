"""Filesystem checks that never raise on hostile input (over-long names, NUL bytes, permissions)."""

from __future__ import annotations

from pathlib import Path


def is_file(path: str | Path) -> bool:
    """``Path(path).is_file()``, but False instead of an exception for names the OS cannot look up.

    >>> is_file("a" * 5000)
    False
    """
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: str | Path) -> bool:
    """``Path(path).is_dir()``, but False instead of an exception."""
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def cache_dir() -> Path:
    """Where chipfit keeps what it measured about this machine (host profile, calibrations):
    ``$CHIPFIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/chipfit``, else ``~/.cache/chipfit``."""
    import os

    if os.environ.get("CHIPFIT_CACHE_DIR"):
        return Path(os.environ["CHIPFIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chipfit"
