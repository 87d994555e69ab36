"""Name lookup helpers shared by every registry: did-you-mean suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(given: str, known: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest known name, or ``""`` when none is close.

    >>> did_you_mean("stm32h734", ["stm32h743", "rp2040"])
    " Did you mean 'stm32h743'?"
    """
    close = difflib.get_close_matches(str(given).lower(), [k.lower() for k in known], n=3, cutoff=0.6)
    if not close:
        return ""
    if len(close) == 1:
        return f" Did you mean '{close[0]}'?"
    return " Did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def one_of(known: Iterable[str], limit: int = 12) -> str:
    """Describe a set of allowed names for an error message."""
    names = sorted(known)
    shown = ", ".join(names[:limit])
    return f"one of {shown}" + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
