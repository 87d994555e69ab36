"""What a run measures on real runtimes at the end: its finalists (the best model and the fastest other Pareto
models), each beside its prediction; and where it measures (also used for its calibration before the search).

Where: ONNX Runtime on this machine when the target is ``host``, plus every device agent the contract lists
(taken to be the target device when the target is not this machine). A runtime that fails — an agent down,
a token file unreadable — is recorded as a :class:`~chipfit.runreport.MeasurementFailure`, not fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chipfit.contract.schema import Contract
from chipfit.errors import ChipfitError
from chipfit.logging import get_logger
from chipfit.measure.base import Runtime
from chipfit.runreport import MeasuredRow, MeasurementFailure
from chipfit.store import CandidateRecord
from chipfit.targets.target import Target

log = get_logger(__name__)


@dataclass(frozen=True)
class MeasuringRuntime:
    """One place a run's models are measured; ``build`` makes the runtime (reads an agent's token file)."""

    where: str
    is_target: bool
    build: Callable[[], Runtime]


def measuring_runtimes(contract: Contract, target: Target) -> list[MeasuringRuntime]:
    """ONNX Runtime here for a ``host`` target; each agent of ``measure.agents``."""
    from chipfit.agent.client import AgentRuntime, read_token
    from chipfit.measure.local import OrtRuntime

    host = target.origin == "host"
    out: list[MeasuringRuntime] = []
    if host:
        out.append(MeasuringRuntime("this machine", True, lambda: OrtRuntime(threads=1)))
    for a in contract.measure.agents:
        out.append(MeasuringRuntime(a.url, not host, lambda a=a: AgentRuntime(a.url, read_token(a.token_file))))
    return out


def measure_finalists(run_dir: Path, contract: Contract, target: Target, finalists: Sequence[CandidateRecord],
                      predict: Callable[[CandidateRecord], Any]) -> list[MeasuredRow | MeasurementFailure]:
    """Measure ``finalists`` (best first) on every measuring runtime, interleaved, each beside ``predict(rec)``
    (the network's predicted Cost: the front-end is not part of the model file)."""
    places = measuring_runtimes(contract, target) if finalists else []
    if not places:
        return []
    paths = [run_dir / r.artifacts["int8"] for r in finalists]
    preds = [predict(r) for r in finalists]
    judged = target.runtime == "onnxruntime"  # what the finalists run on: their int8 ONNX files
    rows: list[MeasuredRow | MeasurementFailure] = []
    for place in places:
        try:
            rt = place.build()
            ms = rt.measure_many(paths, rounds=5, runs=20, memory=True)
        except ChipfitError as e:  # never ask a failed agent for its facts
            log.warning("measuring the finalists failed on %s: %s", place.where, e)
            rows.append(MeasurementFailure(runtime="onnxruntime" if place.where == "this machine" else
                                           "chipfit agent", device=place.where, failure=str(e)))
            continue
        for k, (r, pred, meas) in enumerate(zip(finalists, preds, ms, strict=True)):
            rows.append(MeasuredRow(
                id=r.id, role="best" if k == 0 else "pareto", accuracy_int8=r.accuracy_int8,
                predicted_latency_ms=pred.latency_ms, predicted_basis=pred.efficiency_source,
                measured_latency_ms=meas.latency_ms,
                relative_error=meas.latency_ms / pred.latency_ms - 1 if pred.latency_ms else None,
                judged_on_target=judged and place.is_target, runtime=meas.runtime, device=meas.device,
                label=meas.label(), measured=meas.to_dict()))
    return rows
