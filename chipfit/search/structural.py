"""Families excluded from a run after a structural failure.

A candidate that fails because its network cannot be built, or because tensor shapes do not fit (the model
rejects the preprocessed input, a layer's kernel exceeds its input, int8 calibration gets the wrong dimensions),
will fail the same way for its family's other configs on this input. Such a failure is structural, unlike a
random one (a diverging run) or the environment's (disk, memory): the first one excludes its family for the rest
of the run — it is logged once, kept in ``excluded.json`` in the run directory (so a resumed run honours it),
and the search no longer trains or records that family's samples.

>>> structural_cause("FAILED", "candidate", "build: RuntimeError: Given groups=1, weight of size [8, 6, 3]")
'build'
>>> structural_cause("FAILED", "candidate", "Fail: Got invalid dimensions for input: x. Got: 64 Expected: 51")
'shape'
>>> structural_cause("FAILED", "candidate", "ValueError: loss is NaN") is None
True
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from chipfit.logging import get_logger

log = get_logger(__name__)
EXCLUDED_FILE = "excluded.json"

#: messages of PyTorch, ONNX and ONNX Runtime errors that mean "these shapes cannot fit"
SHAPE_ERROR = re.compile(
    r"invalid dimensions|size mismatch|shapes? cannot be multiplied|must match the size of tensor|"
    r"Kernel size can't be greater|padded input size per channel|Output size is too small|"
    r"expected input\[.*\] to have \d+ channels|Expected \d+D .*input|dimension out of range|"
    r"shape '?\[.*\]'? is invalid for input|Incompatible dimensions|ShapeInferenceError|"
    r"mismatch(?:ed)? (?:shape|dimension)", re.IGNORECASE)


def structural_cause(state: str, failure_kind: str | None, reason: str) -> str | None:
    """``"build"`` or ``"shape"`` when a record failed for a structural reason, else ``None``."""
    if state != "FAILED" or failure_kind == "environment":
        return None
    if reason.startswith("build:"):
        return "build"
    return "shape" if SHAPE_ERROR.search(reason or "") else None


class Exclusions:
    """The run's excluded families (family -> why), persisted in ``excluded.json``."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / EXCLUDED_FILE
        self.families: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                self.families = dict(json.loads(self.path.read_text()))
            except (OSError, ValueError) as exc:
                log.warning("%s is unreadable (%s); no family is excluded", self.path, exc)

    def __contains__(self, family: object) -> bool:
        return family in self.families

    def note(self, family: str, candidate: int, cause: str, reason: str) -> bool:
        """Exclude ``family`` after candidate ``candidate`` failed structurally; ``False`` if it already was."""
        if family in self.families:
            return False
        self.families[family] = {"candidate": candidate, "cause": cause, "reason": reason[:500], "skipped": 0}
        log.warning("family '%s' excluded from the search: candidate %d failed for a structural reason (%s): %s",
                    family, candidate, cause, reason[:300])
        self._save()
        return True

    def skipped(self, family: str) -> None:
        """Count one more sample of an excluded family that was not trained or recorded."""
        self.families[family]["skipped"] = int(self.families[family].get("skipped", 0)) + 1
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.families, indent=1))
        os.replace(tmp, self.path)
