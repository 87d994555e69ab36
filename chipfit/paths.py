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
