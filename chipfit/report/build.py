"""From a run's record to its :class:`~chipfit.runreport.RunReport`: select the best candidate, measure
its int8 model on the test split (clean and under every field condition), measure the finalists on real
runtimes, judge every budget, and copy what ships into ``best/``.

A run never reports PASS from a figure it could not measure: an empty test split or a non-finite accuracy
makes that budget FAIL with the reason, and report.json holds no NaN.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chipfit.budgets import BudgetCheck, check_budgets, measured_latency_check
from chipfit.contract.schema import Contract
from chipfit.cost.model import Cost
from chipfit.data.dataset import Dataset
from chipfit.logging import get_logger
from chipfit.pricing import Pricer
from chipfit.runreport import (
    BestSummary,
    BudgetRow,
    ClosestCandidate,
    ComputeRow,
    CrossValSummary,
    DatasetSummary,
    FieldSummary,
    MeasuredRow,
    MeasurementFailure,
    ParetoPoint,
    RobustnessRow,
    RunReport,
)
from chipfit.runtime.preprocess import Preprocessor
from chipfit.search.callbacks import PHASES, SearchCallbacks
from chipfit.search.selection import compute_account, pareto, select
from chipfit.store import STATES, CandidateRecord
from chipfit.targets.target import Target

log = get_logger(__name__)
BEST_FILES = (("onnx", "model.onnx"), ("int8", "model.int8.onnx"), ("torch", "model.pt"),
              ("preprocess", "preprocess.json"))
ACCURACY_SOURCE = "measured: int8 ONNX model with ONNX Runtime (CPU) on the test split"


@dataclass(frozen=True)
class RunState:
    """What finalising a run reads: its contract and target, data, records and pricer."""

    dir: Path
    contract: Contract
    target: Target
    dataset: Dataset
    records: list[CandidateRecord]
    pricer: Pricer
    wall_seconds: float
    stopped: str = ""


def _other_compute(state: RunState, cv: Any) -> list[ComputeRow]:
    """Training outside the candidates: the distillation teacher (when this run trained it, not the cache) and
    the k-fold cross-validation of tied finalists."""
    import json

    rows = []
    teacher = state.dir / "teacher.json"
    if teacher.is_file():
        try:
            t = json.loads(teacher.read_text())
        except (OSError, ValueError):
            t = {}
        if t and not t.get("cached"):
            s = float(t.get("train_seconds") or 0.0)
            rows.append(ComputeRow(outcome="distillation teacher (trained once, shared)", candidates=1,
                                   train_seconds=s, wall_seconds=s))
    if cv.tie_break is not None and cv.train_seconds:
        rows.append(ComputeRow(outcome="k-fold cross-validation of tied finalists", candidates=len(cv.scores),
                               train_seconds=cv.train_seconds, wall_seconds=cv.wall_seconds))
    return rows


def build_report(state: RunState, *, measure: bool = True, callbacks: SearchCallbacks | None = None) -> RunReport:
    """Finalise a run (see the module docstring); writes ``best/`` but not report.json. ``callbacks.on_phase``
    is called as each step begins (test split, robustness, finalists)."""
    import chipfit
    from chipfit.search.crossval import cross_validate_ties

    cb = callbacks or SearchCallbacks()
    c, recs = state.contract, state.records
    cv = cross_validate_ties(recs, c, state.dataset, state.target, state.dir)
    sel = select(recs, c.budgets, cv.tie_break)
    common: dict[str, Any] = dict(
        chipfit_version=chipfit.__version__, contract=c.name, target=state.target.name,
        runtime=state.target.runtime, counts={s: sum(1 for r in recs if r.state == s) for s in STATES},
        stopped=state.stopped, train_seconds_total=sum(r.train_seconds for r in recs),
        train_seconds_infeasible=sum(r.train_seconds for r in recs if r.state == "INFEASIBLE"),
        compute=[*(ComputeRow(**asdict(s)) for s in compute_account(recs, c.budgets)), *_other_compute(state, cv)],
        pareto=[ParetoPoint(id=r.id, accuracy_int8=r.accuracy_int8, latency_ms=r.predicted["latency_ms"],
                            config=r.config) for r in pareto(recs)],
        dataset=dataset_summary(state.dataset), classes=list(state.dataset.class_names),
        crossval=None if cv.tie_break is None else CrossValSummary(
            folds=cv.folds, candidates=cv.scores, chosen=sel.best.id if sel.best else None, decided=bool(sel.tied),
            train_seconds=cv.train_seconds, wall_seconds=cv.wall_seconds, reason=cv.reason),
    )
    if sel.best is None:
        return RunReport(**common, verdict="FAIL", wall_seconds=state.wall_seconds, binding=sel.binding,
                         closest=closest(sel.closest),
                         reason="no candidate was trained: every sampled candidate violates a budget" if recs
                         else "no candidate was recorded")
    best = sel.best
    from chipfit.quantize.int8 import onnx_accuracy

    data = state.dataset
    cb.on_phase(PHASES["test"], f"{len(data.y_test)} samples")
    pre = Preprocessor.load(state.dir / best.artifacts["preprocess"])
    x_test = pre(data.x_test)
    test_q = _finite_or_none(onnx_accuracy(state.dir / best.artifacts["int8"], x_test, data.y_test))
    test_f = _finite_or_none(onnx_accuracy(state.dir / best.artifacts["onnx"], x_test, data.y_test))
    if c.field:
        cb.on_phase(PHASES["robustness"], f"{len(c.field)} conditions")
    robustness, field = _robustness(state, best, pre)
    best_dir = state.dir / "best"
    best_dir.mkdir(exist_ok=True)
    for key, name in BEST_FILES:
        shutil.copyfile(state.dir / best.artifacts[key], best_dir / name)
    measured: list[MeasuredRow | MeasurementFailure] = []
    if measure and c.measure.finalists:
        from chipfit.report.finalists import measure_finalists

        finalists = [best, *[r for r in pareto(recs) if r.id != best.id][: c.measure.finalists - 1]]
        if finalists and (c.measure.agents or state.target.origin == "host"):
            cb.on_phase(PHASES["finalists"], f"{len(finalists)} models")
        measured = measure_finalists(state.dir, c, state.target, finalists,
                                     lambda r: state.pricer.network_cost(r.config))
    cost = state.pricer.price(best.config).cost
    checks = budget_checks(c, state.target, cost, test_q, field, measured)
    judged = [b.passed for b in checks if b.passed is not None]
    verdict = "PASS" if judged and all(judged) else "FAIL"
    fa = c.budgets.field_accuracy
    return RunReport(
        **common, verdict=verdict, wall_seconds=state.wall_seconds,
        budgets=[budget_row(b, cost) for b in checks],
        best=BestSummary(id=best.id, config=best.config, accuracy_int8=best.accuracy_int8,
                         accuracy_float=best.accuracy_float, predicted=best.predicted, epochs=best.epochs,
                         recipe=best.recipe, qat=best.qat,
                         artifacts={"onnx": "best/model.onnx", "int8": "best/model.int8.onnx",
                                    "preprocess": "best/preprocess.json"}),
        test_accuracy_int8=test_q, test_accuracy_float=test_f, measured=measured, robustness=robustness,
        field_accuracy=None if field is None else FieldSummary(
            mean=field["mean"], worst=field["worst"], over=fa.over if fa else "worst",
            source="measured: int8 ONNX model with ONNX Runtime on the test split under each condition"),
        accuracy_source=ACCURACY_SOURCE, binding=sorted(b.name for b in checks if b.passed is False),
        closest=None if verdict == "PASS" else closest(best),
        reason="" if verdict == "PASS" else _why_not(checks, test_q))


def _why_not(checks: list[BudgetCheck], test_acc: float | None) -> str:
    if test_acc is None:
        return "the test accuracy could not be measured (empty test split?)"
    failed = [b.name for b in checks if b.passed is False]
    return f"the best model breaks {', '.join(failed)}" if failed else "no budget could be judged"


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def dataset_summary(d: Dataset) -> DatasetSummary:
    s = d.summary()
    known = set(DatasetSummary.model_fields)
    return DatasetSummary.model_validate({k: v for k, v in s.items() if k in known})


def closest(rec: CandidateRecord | None) -> ClosestCandidate | None:
    if rec is None:
        return None
    return ClosestCandidate(id=rec.id, config=rec.config, state=rec.state, reason=rec.reason,
                            accuracy_int8=rec.accuracy_int8,
                            violations={k: v for k, v in rec.constraints.items() if v > 0})


def _robustness(state: RunState, best: CandidateRecord, pre: Preprocessor
                ) -> tuple[list[RobustnessRow], dict[str, Any] | None]:
    """Accuracy of the best int8 model on the test split under every declared condition x severity."""
    from chipfit.quantize.int8 import predict_onnx
    from chipfit.robustness.evaluate import evaluate_field, field_cases, summarize

    cases = field_cases(state.contract.field)
    if not cases or not len(state.dataset.y_test):
        return [], None
    model = state.dir / best.artifacts["int8"]
    data = state.dataset
    rows = evaluate_field(lambda x: predict_onnx(model, pre(x)), data.x_test, data.y_test, cases,
                          seed=state.contract.search.seed, sample_rate_hz=data.sample_rate_hz)
    return [RobustnessRow.model_validate(r) for r in rows], summarize(rows)


def budget_checks(contract: Contract, target: Target, cost: Cost, test_acc: float | None,
                  field: dict[str, Any] | None, measured: list[MeasuredRow | MeasurementFailure]) -> list[BudgetCheck]:
    """Every budget judged for the best model: predicted costs, measured accuracies, and the latency budget on
    the target's own measurement where one was made."""
    fa = contract.budgets.field_accuracy
    field_acc = None if field is None or fa is None else _finite_or_none(field[fa.over])
    checks = check_budgets(cost, contract, target=target, accuracy=test_acc, field_accuracy=field_acc)
    if test_acc is None:  # never PASS an accuracy budget on a figure that could not be measured
        checks = [BudgetCheck(b.name, b.unit, b.limit, None, "measured", "test split empty or unmeasurable",
                              value=math.inf, margin=None) if b.name in ("accuracy", "field_accuracy") else b
                  for b in checks]
    lat = contract.budgets.latency_ms
    frontend_ms = sum(layer.latency_ms for layer in cost.layers if layer.op == "dsp")
    judged = [m for m in measured if isinstance(m, MeasuredRow) and m.role == "best" and m.judged_on_target]
    for k, row in enumerate(judged if lat is not None else []):
        m = row.measured
        # the nearest measured percentile at or above the contract's (p50, p90, p99)
        q = 50 if lat.percentile <= 50 else 90 if lat.percentile <= 90 else 99
        checks.append(measured_latency_check(
            lat.max, m[f"p{q}_ms"] + frontend_ms, f"measured p{q} of {m['runs']} runs by {m['runtime']} on "
            f"{m['device']}", frontend_ms, name="latency_ms (measured)" + (f" #{k + 1}" if len(judged) > 1 else "")))
    return checks


def budget_row(b: BudgetCheck, cost: Cost) -> BudgetRow:
    """A BudgetCheck as the report shows it, saying how its figure was obtained."""
    source, predicted_by = b.source, None
    if b.name in ("accuracy", "field_accuracy") and b.source == "measured":
        source = "measured (int8, ONNX Runtime, test split)"
    elif b.source == "predicted":
        calibrated = cost.efficiency_source.startswith("calibrated")
        lat = ("calibrated latency" if calibrated else f"latency by {cost.predicted_by}" if cost.predicted_by
               else "analytical latency")
        if b.name in ("latency_ms", "energy_mj", "battery_days"):
            how = {"latency_ms": lat, "energy_mj": f"{lat} x the device's active power",
                   "battery_days": f"{lat} x active power + sleep power over the duty cycle"}[b.name]
            predicted_by = cost.efficiency_source
        elif b.name == "runtime_support":
            how = "ops and dtypes checked against the runtime's op list"
        elif b.name == "ram_kb" and cost.runtime.startswith("tflm"):
            how = "TFLM's arena plan and persistent allocations, as TFLM's allocator makes them"
        else:
            how = "analytical: weights, planned arena and runtime overheads"
        source = f"predicted (cost model, {how}; {cost.basis})"
    return BudgetRow.model_validate({"name": b.name, "unit": b.unit, "limit": b.limit, "achieved": b.achieved,
                                     "margin": b.margin, "value": b.value, "pass": b.passed, "source": source,
                                     "basis": b.basis, "predicted_by": predicted_by, "result": b.result,
                                     "interval": list(b.interval) if b.interval else None,
                                     "path": b.predicted_by})
