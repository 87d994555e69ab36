"""chipfit's namespaced logger. The library logs; the CLI and the report present.

>>> from chipfit.logging import get_logger, set_verbosity
>>> set_verbosity("WARNING")
>>> get_logger(__name__).name.startswith("chipfit")
True
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

_ROOT = "chipfit"
logging.getLogger(_ROOT).addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """Return a logger under the ``chipfit`` namespace."""
    return logging.getLogger(name if name.startswith(_ROOT) else f"{_ROOT}.{name}")


def set_verbosity(level: int | str) -> None:
    """Set the level of every chipfit logger (never touches the root logger)."""
    logging.getLogger(_ROOT).setLevel(level)


LOG_FILE = "run.log"  # in a run directory: every log record of the run, and the trace of any error that ended it


@contextlib.contextmanager
def log_to_file(path: str | Path, level: int = logging.INFO) -> Iterator[logging.Handler]:
    """Also write chipfit's log records (INFO and above) to ``path`` while the block runs."""
    root = logging.getLogger(_ROOT)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous = root.level
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def write_trace(path: str | Path, exc: BaseException, *, context: str = "") -> Path:
    """Append the full traceback of ``exc`` to ``path`` (a run's log, or a cache file) and return the path."""
    import datetime
    import traceback

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a", encoding="utf-8") as f:
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        f.write(f"\n--- {stamp} error{': ' + context if context else ''}\n")
        f.write("".join(traceback.format_exception(exc)))
    return p
