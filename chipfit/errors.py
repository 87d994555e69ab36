"""Exceptions raised by chipfit.

Every error derives from :class:`ChipfitError`. Messages say what was expected, what was given, where, and
what to do next. The CLI maps :class:`UsageError` subclasses (contract and target problems) to exit code 2
and every other :class:`ChipfitError` to exit code 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ChipfitError(Exception):
    """Root of every error chipfit raises on purpose."""


class UsageError(ChipfitError):
    """The user's input (contract, target file, command-line value) is wrong; exit code 2."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a YAML document: where, what was expected, what was given, what to do."""

    path: str
    expected: str
    given: str
    line: int | None = None
    file: str | None = None
    hint: str | None = None

    def format(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}" if where else f"line {self.line}"
        head = f"{where}: " if where else ""
        text = f"{head}{self.path or '(document)'}: expected {self.expected}; given {self.given}"
        if self.hint:
            text += f". {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "file": self.file,
            "expected": self.expected,
            "given": self.given,
            "hint": self.hint,
        }


class ProblemsError(UsageError):
    """A document with one or more problems; all of them are listed at once."""

    kind = "document"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the {self.kind}:"
        super().__init__("\n".join([head, *("  " + p.format() for p in self.problems)]))


class ContractError(ProblemsError):
    """A contract that cannot be used as written."""

    kind = "contract"


class TargetError(ProblemsError):
    """An unknown device, or a target file that cannot be used as written."""

    kind = "target"


class GraphError(ChipfitError):
    """A model file that cannot be read into an OpGraph (corrupt, unsupported format, dynamic shapes)."""


class DataError(ChipfitError):
    """A dataset that cannot be read (corrupt file, shape or label mismatch)."""


class MeasurementError(ChipfitError):
    """A runtime could not measure a model."""


class ExportError(ChipfitError):
    """An exporter could not write an artifact."""


class ModelFileError(GraphError, MeasurementError, UsageError):
    """A model file the user gave that chipfit cannot use: empty (0 bytes), not ONNX/TFLite, no graph, inputs
    without a shape. A usage error (exit 2); also a GraphError and a MeasurementError, so code that reads graphs
    or measures models and catches those keeps working."""
