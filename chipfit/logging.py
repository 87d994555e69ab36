"""chipfit's namespaced logger. The library logs; the CLI and the report present.

>>> from chipfit.logging import get_logger, set_verbosity
>>> set_verbosity("WARNING")
>>> get_logger(__name__).name.startswith("chipfit")
True
"""

from __future__ import annotations

import logging

_ROOT = "chipfit"
logging.getLogger(_ROOT).addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """Return a logger under the ``chipfit`` namespace."""
    return logging.getLogger(name if name.startswith(_ROOT) else f"{_ROOT}.{name}")


def set_verbosity(level: int | str) -> None:
    """Set the level of every chipfit logger (never touches the root logger)."""
    logging.getLogger(_ROOT).setLevel(level)
