"""Exporter interface and registry: ``export_best(best, "all" | name) -> paths`` for a run's :class:`BestModel`.

>>> from chipfit.export import list_exporters
>>> list_exporters()
['c', 'manifest', 'onnx', 'tflite']
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

from chipfit.errors import ExportError, UsageError
from chipfit.logging import get_logger
from chipfit.naming import did_you_mean

if TYPE_CHECKING:
    from chipfit.bestmodel import BestModel

log = get_logger(__name__)


class Exporter(ABC):
    """Writes one deployable form of a run's best model into ``best.dir`` (the run's ``best/``)."""

    name: str
    requires: tuple[str, ...] = ()  # other exporters that must run first

    @abstractmethod
    def export(self, best: BestModel) -> list[Path]:
        """Write the artifact(s); return their paths."""

    def available(self) -> str | None:
        """``None`` when usable here, else why not (e.g. an optional dependency is missing)."""
        return None


EXPORTERS: dict[str, Exporter] = {}


def register_exporter(exporter: Exporter) -> Exporter:
    EXPORTERS[exporter.name] = exporter
    return exporter


def list_exporters() -> list[str]:
    return sorted(EXPORTERS)


def export_best(best: BestModel, fmt: str = "all", *, strict: bool = True,
                on_format: Callable[[str], None] | None = None, exclude: Collection[str] = ()
                ) -> dict[str, list[Path]]:
    """Run one exporter (with what it requires) or all of them but ``exclude``. With ``strict=False`` an exporter
    that is not available here (missing optional dependency) is skipped and logged instead of raising.
    ``on_format(name)`` is called as each exporter starts (progress)."""
    if fmt != "all" and fmt not in EXPORTERS:
        raise UsageError(f"unknown export format '{fmt}': expected all or {', '.join(list_exporters())}."
                         f"{did_you_mean(fmt, EXPORTERS)}")
    order = [n for n in _order(list(EXPORTERS) if fmt == "all" else [fmt]) if n not in exclude]
    out: dict[str, list[Path]] = {}
    for name in order:
        exp = EXPORTERS[name]
        why = exp.available()
        if why:
            if strict and (fmt == name):
                raise ExportError(f"the {name} exporter is not available here: {why}")
            log.warning("skipping the %s export: %s", name, why)
            continue
        if on_format is not None:
            on_format(name)
        try:
            out[name] = exp.export(best)
        except Exception as exc:  # a converter's failure or an exporter's bug: name the format
            err = exc if isinstance(exc, ExportError) else ExportError(
                f"the {name} export of {best.run_dir} failed: {type(exc).__name__}: {exc}")
            if strict:
                raise err from exc
            log.warning("%s (the other formats are still written)", err, exc_info=exc)
    return out


_PRIORITY = {"onnx": 0, "tflite": 1, "c": 2, "manifest": 99}  # the C array embeds the TFLite file if there is one


def _order(names: list[str]) -> list[str]:
    """``names`` plus what they require, in an order where inputs come first and the manifest last."""
    wanted: set[str] = set()

    def visit(n: str) -> None:
        wanted.add(n)
        for dep in EXPORTERS[n].requires:
            visit(dep)

    for n in names:
        visit(n)
    return sorted(wanted, key=lambda n: (_PRIORITY.get(n, 50), n))
