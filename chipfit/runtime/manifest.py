"""``Manifest``: the typed ``manifest.json`` that ships beside the model — what a device-side app needs to run
it exactly as chipfit did (preprocessing recipe, labels, quantization of the I/O, models, arena), the typed
run report it came from, and provenance. Read by :class:`~chipfit.runtime.Predictor`; pydantic only (no torch).

>>> Manifest.load("/nonexistent/manifest.json")  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
chipfit.errors.ChipfitError: /nonexistent/manifest.json: unreadable ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from chipfit.errors import ChipfitError
from chipfit.runreport import RunReport, parse_report

MANIFEST_VERSION = 2


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelFiles(_Record):
    onnx_fp32: str
    onnx_int8: str
    tflite_int8: str | None = None


class TargetSummary(_Record):
    name: str
    runtime: str
    core: str
    clock_mhz: float | None = None


class Provenance(_Record):
    chipfit_version: str
    contract_sha256: str
    seed: int
    candidate_id: int
    data_fingerprint: str | None
    python: str


class Manifest(_Record):
    """Everything about the shipped model; ``report`` is the run's typed :class:`RunReport`."""

    manifest_version: Literal[2] = MANIFEST_VERSION
    name: str
    labels: list[str]
    input: dict[str, Any]
    preprocessing: dict[str, Any]
    models: ModelFiles
    quantization: dict[str, Any]
    architecture: dict[str, Any]
    target: TargetSummary
    tensor_arena_bytes: int | None
    files: dict[str, dict[str, Any]]
    provenance: Provenance
    report: RunReport
    drift: dict[str, Any] | None = None

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.model_dump(mode="json", by_alias=True), indent=2, allow_nan=False))
        return p

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ChipfitError(f"{p}: unreadable ({type(exc).__name__}: {exc}); re-export with "
                               "'chipfit export RUN_DIR --format manifest'.") from None
        if not isinstance(data, dict) or data.get("manifest_version") != MANIFEST_VERSION:
            version = data.get("manifest_version") if isinstance(data, dict) else None
            raise ChipfitError(f"{p}: manifest_version {version!r}, but this chipfit reads version "
                               f"{MANIFEST_VERSION}; re-export with 'chipfit export RUN_DIR --format manifest'.")
        try:
            report = parse_report(data.get("report"), where=f"{p} (report)")
            return cls.model_validate({**data, "report": report})
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise ChipfitError(f"{p}: not a valid chipfit manifest (first problem at {loc}: {first['msg']}); "
                               "re-export with 'chipfit export RUN_DIR --format manifest'.") from None
