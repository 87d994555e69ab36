"""Name lookup helpers shared by every registry: did-you-mean suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent swaps cost 1.

    >>> edit_distance("stm32h734", "stm32h743")
    1
    """
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def did_you_mean(given: str, known: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest known name(s), or ``""`` when none is close.

    >>> did_you_mean("stm32h734", ["stm32h743", "stm32h7a3", "rp2040"])
    " Did you mean 'stm32h743'?"
    """
    names = list(known)
    g = str(given).lower()
    close = difflib.get_close_matches(g, [k.lower() for k in names], n=5, cutoff=0.6)
    close += [k.lower() for k in names if edit_distance(g, k.lower()) <= max(1, len(g) // 4) and k.lower() not in close]
    if not close:
        return ""
    ranked = sorted(close, key=lambda k: (edit_distance(g, k), -difflib.SequenceMatcher(None, g, k).ratio()))
    best = edit_distance(g, ranked[0])
    top = [k for k in ranked if edit_distance(g, k) == best][:3]
    if len(top) == 1:
        return f" Did you mean '{top[0]}'?"
    return " Did you mean " + " or ".join(f"'{c}'" for c in top) + "?"


def one_of(known: Iterable[str], limit: int = 12) -> str:
    """Describe a set of allowed names for an error message."""
    names = sorted(known)
    shown = ", ".join(names[:limit])
    return f"one of {shown}" + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
