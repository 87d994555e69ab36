"""``Manifest``: the typed ``manifest.json`` that ships beside the model — what a device-side app needs to run
it exactly as chipfit did (the raw input contract, preprocessing recipe, labels, quantization of the I/O,
models, arena), the typed run report it came from, and provenance. Read by :class:`~chipfit.runtime.Predictor`;
pydantic only (no torch).

``input`` is the contract for *raw* input — what the sensor or file gives, before any scaling — stated so
that an app on the device can feed the model without reading chipfit's code: dtype, shape of one sample,
layout, value range, the scaling the recipe applies, and one line of Python that gives a raw sample:

>>> InputContract(modality="image", shape=[8, 8, 1], layout="HWC", dtype="float64", range=(0, 16),
...               range_kind="nominal", scale=1 / 16, offset=0.0).batch_shape
'[N, 8, 8, 1]'

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
from chipfit.runtime.preprocess import RANGE_TOLERANCE

MANIFEST_VERSION = 3  # 3: typed raw-input contract (``input``) and the raw scaling in the recipe


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


class InputContract(_Record):
    """The raw input the model takes: one sample of ``shape`` in ``layout`` (or a batch ``[N, *shape]``),
    values of ``dtype`` within ``range``. The recipe computes ``raw * scale + offset`` first, as in training.

    ``range_kind`` is ``nominal`` (the full scale of the format; the Predictor warns beyond it, by more than
    ``tolerance`` of its width, and raises with ``strict=True``) or ``observed`` (the training data's min / max;
    values beyond are possible and left to the drift monitor).
    """

    modality: Literal["image", "audio", "series"]
    shape: list[int]
    layout: str
    dtype: str
    range: tuple[float, float] | None
    range_kind: Literal["nominal", "observed"]
    scale: float
    offset: float
    tolerance: float = RANGE_TOLERANCE
    sample_rate_hz: float | None = None
    description: str = ""
    example: str = ""

    @property
    def batch_shape(self) -> str:
        return f"[N, {', '.join(str(d) for d in self.shape)}]"


class Provenance(_Record):
    chipfit_version: str
    contract_sha256: str
    seed: int
    candidate_id: int
    data_fingerprint: str | None
    python: str


class Manifest(_Record):
    """Everything about the shipped model; ``report`` is the run's typed :class:`RunReport`."""

    manifest_version: Literal[3] = MANIFEST_VERSION
    name: str
    labels: list[str]
    input: InputContract
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
            why = " (version 2 did not state the raw input's range and scaling)" if version == 2 else ""
            raise ChipfitError(f"{p}: manifest_version {version!r}, but this chipfit reads version "
                               f"{MANIFEST_VERSION}{why}; re-export with 'chipfit export RUN_DIR --format manifest'.")
        try:
            report = parse_report(data.get("report"), where=f"{p} (report)")
            return cls.model_validate({**data, "report": report})
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise ChipfitError(f"{p}: not a valid chipfit manifest (first problem at {loc}: {first['msg']}); "
                               "re-export with 'chipfit export RUN_DIR --format manifest'.") from None
