"""``RunReport``: the typed, versioned record of a finished run (``report.json``), with a published JSON Schema.

Every reader — the CLI summary, ``report.html``, the manifest exporter, the device-side ``Predictor`` — takes
this object, never a dict. A report written by an older chipfit is migrated when that is possible
(:data:`MIGRATIONS`) and is otherwise a clear error that says how to regenerate it (``chipfit report RUN``).
The JSON never holds ``NaN`` or ``Infinity``: non-finite figures are ``null``, so report.json is always valid
JSON for any parser.

>>> r = RunReport(contract="demo", target="stm32l4r5", runtime="tflm-cmsis-nn", verdict="FAIL",
...               reason="no candidate was recorded")
>>> RunReport.model_validate_json(r.to_json()) == r
True
>>> r.report_version == REPORT_VERSION
True
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chipfit.errors import ChipfitError

REPORT_VERSION = 2
Verdict = Literal["PASS", "FAIL"]


class ReportError(ChipfitError):
    """report.json is missing, unreadable, or from a chipfit this version cannot read."""


def _finite(v: Any) -> Any:
    """Non-finite floats become ``None`` (JSON has no NaN or Infinity)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class BudgetRow(_Record):
    """One budget as judged for the best model: limit, achieved figure, margin, result and provenance."""

    name: str
    unit: str
    limit: float | None
    achieved: float | None
    margin: float | None = None
    value: float | None = None  # constraint value, <= 0 holds
    passed: bool | None = Field(default=None, alias="pass")  # None: pending (could not be judged)
    source: str  # "predicted (...)", "measured (...)" or "pending"
    basis: str  # where the limit comes from
    predicted_by: str | None = None  # the cost model's efficiency source, for latency/energy figures
    # PASS, AT RISK (the 80 % interval of a predicted figure crosses the limit), FAIL or pending; a report
    # written before intervals existed gets it from ``pass``
    result: Literal["PASS", "AT RISK", "FAIL", "pending"] | None = None
    interval: list[float] | None = None  # 80 % interval of ``achieved`` (predicted latency / energy / days)
    path: str | None = None  # the prediction path: fitted board, same core other board, analogous core, ...

    _finite = field_validator("limit", "achieved", "margin", "value", mode="before")(_finite)

    @model_validator(mode="before")
    @classmethod
    def _result_from_pass(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("result") is None:
            passed = data.get("pass", data.get("passed"))
            data = {**data, "result": {True: "PASS", False: "FAIL", None: "pending"}[passed]}
        return data


class ParetoPoint(_Record):
    id: int
    accuracy_int8: float
    latency_ms: float
    config: dict[str, Any]


class ComputeRow(_Record):
    """Where the search's compute went: the candidates of one outcome (see
    ``chipfit.search.selection.OUTCOMES``) and their training and wall seconds."""

    outcome: str
    candidates: int
    train_seconds: float
    wall_seconds: float


class CrossValSummary(_Record):
    """How a tie at the top was broken: with a validation split too small to rank, the candidates within one
    validation sample of the best were retrained on ``folds`` stratified folds of train + validation and the best
    mean held-out accuracy (``metric``: int8) won. Its seconds are not in ``compute`` (which accounts for the
    search's candidates)."""

    folds: int
    metric: str = "int8"
    candidates: dict[int, float] = {}  # candidate id -> mean cross-validated accuracy
    chosen: int | None = None  # the id selected among them
    decided: bool = False  # whether the cross-validated accuracy chose the best (two or more candidates scored)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    reason: str = ""


class BestSummary(_Record):
    """The selected candidate: its configuration, validation accuracies and predicted cost."""

    id: int
    config: dict[str, Any]
    accuracy_int8: float | None
    accuracy_float: float | None
    predicted: dict[str, Any]
    artifacts: dict[str, str]
    epochs: int = 0
    # how it was trained (chipfit.train.recipes.Recipe as recorded) and its quantization-aware fine-tuning, if any
    recipe: dict[str, Any] = {}
    qat: dict[str, Any] | None = None


class MeasuredRow(_Record):
    """One finalist measured by a real runtime, beside its prediction."""

    id: int
    role: Literal["best", "pareto"]
    accuracy_int8: float | None
    predicted_latency_ms: float
    predicted_basis: str
    measured_latency_ms: float
    relative_error: float | None
    judged_on_target: bool
    runtime: str
    device: str
    label: str
    measured: dict[str, Any]  # the Measurement, as Measurement.to_dict()

    _finite = field_validator("relative_error", mode="before")(_finite)


class MeasurementFailure(_Record):
    """A runtime that could not measure the finalists (an agent down, a token unreadable): recorded, not fatal."""

    runtime: str
    device: str
    failure: str


class RobustnessRow(_Record):
    condition: str
    severity: float
    accuracy: float | None

    _finite = field_validator("accuracy", mode="before")(_finite)


class FieldSummary(_Record):
    mean: float | None
    worst: float | None
    over: Literal["worst", "mean"]
    source: str


class DatasetSummary(_Record):
    source: str
    modality: str
    classes: list[str]
    train: int
    val: int
    test: int
    sample_shape: list[int]
    skipped: int = 0
    fingerprint: str
    label_map: dict[str, int] | None = None  # labels as found in the data -> class index
    skipped_files: list[str] = []
    notes: list[str] = []


class ClosestCandidate(_Record):
    id: int
    config: dict[str, Any]
    state: str
    reason: str
    accuracy_int8: float | None
    violations: dict[str, float]


class TflmCheck(_Record):
    """The exported ``.tflite`` run through TFLM's interpreter (the reference kernels an MCU runs; CMSIS-NN is
    bit-exact with them) on the test split, beside ONNX Runtime's int8 accuracy on the same split."""

    loaded: bool  # False: TFLM could not run the exported model (``failure`` says why)
    failure: str | None = None
    samples: int = 0
    accuracy_tflm: float | None = None
    accuracy_onnxruntime: float | None = None
    agreement: float | None = None  # share of test predictions equal to ONNX Runtime's int8 model's
    gap_points: float | None = None  # |TFLM - ONNX Runtime| accuracy, in percentage points
    flagged: bool = False  # the gap is over 1 point, or TFLM could not run the model
    source: str = "measured: tflite-micro interpreter (reference kernels), one sample at a time, test split"

    _finite = field_validator("accuracy_tflm", "accuracy_onnxruntime", "agreement", "gap_points",
                              mode="before")(_finite)


class RunReport(_Record):
    """What a finished run concluded. Written to ``report.json``; read back with :func:`load_report`."""

    report_version: Literal[2] = REPORT_VERSION
    chipfit_version: str = ""
    contract: str
    target: str
    runtime: str
    verdict: Verdict
    reason: str = ""  # why there is no best model, when there is none
    counts: dict[str, int] = {}
    stopped: str = ""  # why the search stopped (trials done, time budget, nothing left to sample)
    train_seconds_total: float = 0.0
    train_seconds_infeasible: float = 0.0
    compute: list[ComputeRow] = []  # seconds per outcome (holds every budget, below a budget, pruned, failed...)
    wall_seconds: float = 0.0
    pareto: list[ParetoPoint] = []
    best: BestSummary | None = None
    budgets: list[BudgetRow] = []
    binding: list[str] = []
    closest: ClosestCandidate | None = None
    test_accuracy_int8: float | None = None
    test_accuracy_float: float | None = None
    accuracy_source: str = ""
    measured: list[MeasuredRow | MeasurementFailure] = []
    robustness: list[RobustnessRow] = []
    field_accuracy: FieldSummary | None = None
    dataset: DatasetSummary | None = None
    classes: list[str] = []
    tflm: TflmCheck | None = None  # the exported .tflite under TFLM (None: no .tflite, or tflite-micro absent)
    crossval: CrossValSummary | None = None  # a tie at the top broken by k-fold cross-validation (None: no tie-break)

    _finite = field_validator("test_accuracy_int8", "test_accuracy_float", mode="before")(_finite)

    def to_json(self) -> str:
        """The report as strict JSON (no NaN), ``pass`` spelled as in the schema."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Write atomically (a temp file renamed over ``path``), so a reader never sees half a report."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(p)
        return p

    @property
    def measured_rows(self) -> list[MeasuredRow]:
        return [m for m in self.measured if isinstance(m, MeasuredRow)]


def _from_v1(d: dict[str, Any]) -> dict[str, Any]:
    """Reports written before the version field (chipfit 0.1 first wave): same keys, no version."""
    d = dict(d)
    d["report_version"] = 2
    d.setdefault("classes", list((d.get("dataset") or {}).get("classes", [])))
    for row in d.get("budgets", []):
        row.setdefault("pass", row.get("passed"))
        row.pop("passed", None)
    return d


# version found -> function that turns it into the next version's dict
MIGRATIONS = {1: _from_v1}


def parse_report(data: dict[str, Any], *, where: str = "report.json") -> RunReport:
    """A typed report from a parsed report.json, migrating older versions (see :data:`MIGRATIONS`)."""
    if not isinstance(data, dict):
        raise ReportError(f"{where}: expected a JSON object; given {type(data).__name__}.")
    version = data.get("report_version", 1)
    if not isinstance(version, int) or version > REPORT_VERSION:
        raise ReportError(f"{where}: report_version {version!r} is newer than this chipfit reads "
                          f"({REPORT_VERSION}); upgrade chipfit, or regenerate it with 'chipfit report RUN_DIR'.")
    while version < REPORT_VERSION:
        if version not in MIGRATIONS:
            raise ReportError(f"{where}: report_version {version} cannot be migrated; regenerate it with "
                              "'chipfit report RUN_DIR'.")
        data = MIGRATIONS[version](data)
        version += 1
    try:
        return RunReport.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ReportError(f"{where}: not a valid chipfit report ({exc.error_count()} problems; first at {loc}: "
                          f"{first['msg']}); regenerate it with 'chipfit report RUN_DIR'.") from None


def load_report(path: str | Path) -> RunReport:
    """Read ``report.json`` (or a run directory's) into a :class:`RunReport`.

    >>> load_report("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    chipfit.runreport.ReportError: no report.json at /nonexistent ...
    """
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.is_file():
        raise ReportError(f"no report.json at {p}: the run has not finished; finish it (chipfit run RUN --resume) "
                          "or write the report with 'chipfit report RUN_DIR'.")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{p}: unreadable ({type(exc).__name__}: {exc}); regenerate it with "
                          "'chipfit report RUN_DIR'.") from None
    return parse_report(data, where=str(p))


def report_schema() -> dict[str, Any]:
    """The published JSON Schema of report.json (``chipfit schema report`` prints it)."""
    schema = RunReport.model_json_schema(by_alias=True, mode="serialization")
    schema["$id"] = f"urn:chipfit:report:v{REPORT_VERSION}"
    schema["title"] = "chipfit run report"
    return schema


__all__ = ["REPORT_VERSION", "BestSummary", "BudgetRow", "ClosestCandidate", "CrossValSummary", "DatasetSummary",
           "FieldSummary", "MeasuredRow", "MeasurementFailure",
           "ParetoPoint", "ReportError", "RobustnessRow", "RunReport", "TflmCheck",
           "load_report", "parse_report", "report_schema"]
