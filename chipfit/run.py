"""``Run``: the one object a user holds for a job — created from a contract, or loaded from its directory.

>>> import chipfit, tempfile
>>> run = chipfit.create_run("examples/digits.yaml", out=tempfile.mkdtemp() + "/r")
>>> run.dir.exists(), run.candidates
(True, [])
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chipfit.contract import Contract, load_contract
from chipfit.cost.model import Cost, CostModel
from chipfit.data.dataset import Dataset
from chipfit.errors import ChipfitError, UsageError
from chipfit.logging import get_logger
from chipfit.search.callbacks import SearchCallbacks
from chipfit.search.feasibility import BudgetCheck, check_budgets
from chipfit.space import ArchConfig, create_space
from chipfit.store import STATES, CandidateRecord, CandidateStore

log = get_logger(__name__)


class RunExistsError(UsageError):
    """The run directory already holds a run."""


@dataclass(frozen=True)
class Selection:
    best: CandidateRecord | None
    meets_accuracy: bool
    binding: list[str]
    closest: CandidateRecord | None


def _resolved_contract_dict(contract: Contract) -> dict[str, Any]:
    data = contract.model_dump(mode="json", exclude={"base_dir"})
    base = Path(contract.base_dir)
    d = data["task"]["data"]
    if d.get("path") and not Path(d["path"]).is_absolute():
        d["path"] = str((base / d["path"]).resolve())
    for agent in data.get("measure", {}).get("agents", []):
        if not Path(agent["token_file"]).is_absolute():
            agent["token_file"] = str((base / agent["token_file"]).resolve())
    t = data["target"]
    if isinstance(t, str) and (t.endswith((".yaml", ".yml")) or "/" in t) and not Path(t).is_absolute():
        data["target"] = str((base / t).resolve())
    return data


class Run:
    """A chipfit job and its directory (contract.yaml, study.log, candidates.jsonl, best/, report.json)."""

    def __init__(self, contract: Contract, directory: Path) -> None:
        self.contract = contract
        self.dir = Path(directory)
        self.store = CandidateStore(self.dir / "candidates.jsonl")
        self._target = None

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, contract: Contract | str | Path, *, out: str | Path | None = None, resume: bool = False) -> Run:
        c = contract if isinstance(contract, Contract) else load_contract(contract)
        directory = Path(out) if out else Path("runs") / c.name
        if (directory / "contract.yaml").exists():
            if not resume:
                raise RunExistsError(f"'{directory}' already holds a run. Resume it with --resume "
                                     "(chipfit run CONTRACT --resume), or choose another --out.")
            return cls.load(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "contract.yaml").write_text(yaml.safe_dump(_resolved_contract_dict(c), sort_keys=False))
        return cls(load_contract(directory / "contract.yaml"), directory)

    @classmethod
    def load(cls, directory: str | Path) -> Run:
        d = Path(directory)
        if not (d / "contract.yaml").exists():
            raise UsageError(f"'{d}' is not a chipfit run directory (no contract.yaml).")
        return cls(load_contract(d / "contract.yaml"), d)

    # -- state --------------------------------------------------------------------------------------------
    @property
    def target(self):  # noqa: ANN201
        if self._target is None:
            self._target = self.contract.get_target()
        return self._target

    @functools.cached_property
    def dataset(self) -> Dataset:
        """The contract's data, loaded once per Run (finalize, exporters and references share it)."""
        from chipfit.data.sources import load_dataset

        return load_dataset(self.contract)

    @property
    def candidates(self) -> list[CandidateRecord]:
        return self.store.load()

    def counts(self) -> dict[str, int]:
        cands = self.candidates
        return {s: sum(1 for r in cands if r.state == s) for s in STATES}

    @property
    def pareto(self) -> list[CandidateRecord]:
        """Completed candidates not dominated on (int8 accuracy up, predicted latency down)."""
        done = [r for r in self.candidates if r.state == "COMPLETE" and r.accuracy_int8 is not None]
        front = []
        for r in done:
            lat, acc = r.predicted["latency_ms"], r.accuracy_int8
            if not any(o.accuracy_int8 >= acc and o.predicted["latency_ms"] <= lat and
                       (o.accuracy_int8 > acc or o.predicted["latency_ms"] < lat) for o in done):
                front.append(r)
        return sorted(front, key=lambda r: r.predicted["latency_ms"])

    def select(self) -> Selection:
        """Best = highest int8 validation accuracy that holds every budget; ties go to larger margins."""
        cands = self.candidates
        done = [r for r in cands if r.state == "COMPLETE" and r.accuracy_int8 is not None and r.feasible]
        acc_budget = self.contract.budgets.accuracy
        fa = self.contract.budgets.field_accuracy

        def holds(r: CandidateRecord) -> bool:
            ok = acc_budget is None or r.accuracy_int8 >= acc_budget
            return ok and (fa is None or (r.accuracy_field_int8 is not None and r.accuracy_field_int8 >= fa.min))

        def score(r: CandidateRecord) -> tuple[float, float]:
            value = r.accuracy_field_int8 if fa is not None and r.accuracy_field_int8 is not None else r.accuracy_int8
            return round(value, 6), sum(r.margins.values())

        meeting = [r for r in done if holds(r)]
        pool = meeting or done
        if pool:
            best = max(pool, key=score)
            binding = [] if meeting else [n for n, b in (("accuracy", acc_budget), ("field_accuracy", fa)) if b]
            return Selection(best, bool(meeting), binding, None if meeting else best)
        scored = [r for r in cands if r.constraints]
        if not scored:
            return Selection(None, False, [], None)
        closest = min(scored, key=lambda r: sum(max(v, 0.0) for v in r.constraints.values()))
        return Selection(None, False, sorted(k for k, v in closest.constraints.items() if v > 0), closest)

    @property
    def best(self) -> CandidateRecord | None:
        return self.select().best

    # -- measurement on real runtimes ---------------------------------------------------------------------
    def measuring_runtimes(self) -> list[Any]:
        """Where this run's models are measured: ONNX Runtime here when the target is ``host``, plus every
        agent the contract lists. Agents' token files are read here, so a missing one fails early."""
        return [build() for _, _, build in self._runtime_builders()]

    def _runtime_builders(self) -> list[tuple[str, bool, Any]]:
        """``(where, is the target itself, build)`` per measuring runtime: the host's ONNX Runtime for a host
        target; each agent (taken to be the target device when the target is not this machine)."""
        from chipfit.measure.agent_client import AgentRuntime, read_token
        from chipfit.measure.local import OrtRuntime

        host = self.target.origin == "host"
        out: list[tuple[str, bool, Any]] = []
        if host:
            out.append(("this machine", True, lambda: OrtRuntime(threads=1)))
        for a in self.contract.measure.agents:
            out.append((a.url, not host, lambda a=a: AgentRuntime(a.url, read_token(a.token_file))))
        return out

    def calibrate(self) -> Any:
        """The run's calibration (``calibration.json``), fixed before the search so a resumed run prices
        candidates as before: a calibration cached by ``chipfit calibrate`` for this target is copied in;
        otherwise one is made on the first measuring runtime (``measure.calibrate``). None when the target
        cannot be measured, or its runtime is not ONNX Runtime (what the probes run on)."""
        from chipfit.cost.calibration import Calibration
        from chipfit.measure.calibrate import calibrate

        path = self.dir / "calibration.json"
        if path.is_file():
            return Calibration.load(path)
        m = self.contract.measure
        runtimes = self.measuring_runtimes()  # read the token files now, whatever happens next
        if not m.calibrate:
            return None
        cached = CostModel().calibration_for(self.target, self.target.runtime, self.contract.dtype)
        if cached is not None:
            log.info("using the cached calibration: %s", cached.describe())
            cached.save(path)
            return cached
        if not runtimes:
            return None
        if self.target.runtime != "onnxruntime":
            log.warning("not calibrating: the target's runtime is %s, but probes run on ONNX Runtime; pin "
                        "`runtime: onnxruntime` in the contract to calibrate and judge on measurements",
                        self.target.runtime)
            return None
        log.info("calibrating the cost model: %d probe networks on %s", m.calibration_probes, runtimes[0].describe())
        cal = calibrate(self.target.name, runtime=runtimes[0], probes=m.calibration_probes, dtype=self.contract.dtype,
                        save=False)
        cal.save(path)
        return cal

    def measure_finalists(self, best: CandidateRecord) -> list[dict[str, Any]]:
        """Measure the best model and the fastest other Pareto models on every measuring runtime, interleaved,
        each beside its prediction (network only: the front-end is not part of the model file). A runtime
        that fails (an agent down, a token file unreadable) is recorded with its error, not fatal."""
        n = self.contract.measure.finalists
        builders = self._runtime_builders() if n else []
        if not builders:
            return []
        recs = [best, *[r for r in self.pareto if r.id != best.id][: n - 1]]
        paths = [self.dir / r.artifacts["int8"] for r in recs]
        space = create_space(self.contract.input_spec(), self.contract.num_classes)
        cm = CostModel.for_run(self.dir)
        preds = [cm.estimate(space.candidate(ArchConfig.from_dict(r.config)).graph, self.target,
                             dtype=self.contract.dtype) for r in recs]
        judged = self.target.runtime == "onnxruntime"  # what the finalists run on: their int8 ONNX files
        rows: list[dict[str, Any]] = []
        for where, is_target, build in builders:
            try:
                rt = build()
                ms = rt.measure_many(paths, rounds=5, runs=20, memory=True)
            except ChipfitError as e:  # never ask a failed agent for its facts
                log.warning("measuring the finalists failed on %s: %s", where, e)
                rows.append({"runtime": "onnxruntime" if where == "this machine" else "chipfit agent",
                             "device": where, "failure": str(e)})
                continue
            for r, pred, meas in zip(recs, preds, ms, strict=True):
                rows.append({"id": r.id, "role": "best" if r.id == best.id else "pareto",
                             "accuracy_int8": r.accuracy_int8, "predicted_latency_ms": pred.latency_ms,
                             "predicted_basis": pred.efficiency_source, "measured_latency_ms": meas.latency_ms,
                             "relative_error": meas.latency_ms / pred.latency_ms - 1 if pred.latency_ms else None,
                             "judged_on_target": judged and is_target,
                             "runtime": meas.runtime, "device": meas.device, "label": meas.label(),
                             "measured": meas.to_dict()})
        return rows

    # -- the job ------------------------------------------------------------------------------------------
    def search(self, *, callbacks: SearchCallbacks | None = None, backend: str | None = None,
               workers: int | None = None, address: str | None = None) -> Run:
        """Run (or resume) the search until ``search.trials`` candidates are recorded or time runs out.

        ``backend``/``workers``/``address`` override the contract's search settings: ``local`` with N
        workers runs N processes here; ``ray`` runs candidate trainings as Ray tasks on a cluster.
        """
        from chipfit.search.claims import Claims, recover
        from chipfit.search.loop import SearchLoop, open_study

        s = self.contract.search
        backend, workers, address = backend or s.backend, workers or s.workers, address or s.address
        t0 = time.monotonic()
        deadline = t0 + s.time_budget_s if s.time_budget_s else None
        recover(open_study(self.dir, s.seed, s.trials), Claims(self.dir), {r.key for r in self.candidates})
        self.calibrate()
        data = self.dataset
        if backend == "ray":
            from chipfit.search.ray_backend import run_ray

            loop = SearchLoop(self.contract, data, self.target, self.dir, callbacks=callbacks)
            run_ray(self, loop, address=address, workers=workers, deadline=deadline)
        elif workers > 1:
            from chipfit.search.local import join_workers, start_workers

            threads = max(1, s.threads // workers)
            procs = start_workers(self.dir, workers - 1, s.time_budget_s, threads)
            try:
                SearchLoop(self.contract, data, self.target, self.dir, callbacks=callbacks, threads=threads).run(
                    deadline=deadline)
            finally:
                join_workers(procs)
        else:
            SearchLoop(self.contract, data, self.target, self.dir, callbacks=callbacks).run(deadline=deadline)
        self._add_wall(time.monotonic() - t0)
        return self

    def evaluate_reference(self, name: str) -> dict[str, Any]:
        """Train a named reference architecture (e.g. ``"resnet8"``) through the same pipeline, data and
        target, whatever its cost, and measure its int8 model on the test split (for comparison)."""
        from chipfit.data.preprocess import Preprocessor
        from chipfit.quantize.int8 import onnx_accuracy
        from chipfit.search.loop import SearchLoop
        from chipfit.space import reference_config

        data = self.dataset
        loop = SearchLoop(self.contract, data, self.target, self.dir)
        rec = loop.evaluate(reference_config(name), 0, train_infeasible=True, subdir=f"references/{name}")
        out: dict[str, Any] = {"name": name, "record": rec.to_dict()}
        if rec.state == "COMPLETE":
            pre = Preprocessor.from_dict(json.loads((self.dir / rec.artifacts["preprocess"]).read_text()))
            out["test_accuracy_int8"] = onnx_accuracy(self.dir / rec.artifacts["int8"], pre(data.x_test), data.y_test)
        return out

    def _add_wall(self, seconds: float) -> None:
        state = self.dir / "run.json"
        prev = json.loads(state.read_text()).get("wall_seconds", 0.0) if state.exists() else 0.0
        state.write_text(json.dumps({"wall_seconds": prev + seconds}))

    def wall_seconds(self) -> float:
        state = self.dir / "run.json"
        return json.loads(state.read_text()).get("wall_seconds", 0.0) if state.exists() else 0.0

    def finalize(self) -> dict[str, Any]:
        """Measure the best candidate's int8 model on the test split, copy it to ``best/`` and write
        ``report.json``. Returns the report."""
        from chipfit.quantize.int8 import onnx_accuracy

        t0 = time.monotonic()
        sel = self.select()
        report: dict[str, Any] = {"contract": self.contract.name, "target": self.target.name,
                                  "runtime": self.target.runtime, "counts": self.counts()}
        cands = self.candidates
        report["train_seconds_total"] = sum(r.train_seconds for r in cands)
        report["train_seconds_infeasible"] = sum(r.train_seconds for r in cands if r.state == "INFEASIBLE")
        report["pareto"] = [{"id": r.id, "accuracy_int8": r.accuracy_int8, "latency_ms": r.predicted["latency_ms"],
                             "config": r.config} for r in self.pareto]
        if sel.best is None:
            report.update(verdict="FAIL", best=None, budgets=[], test_accuracy_int8=None, binding=sel.binding,
                          closest=_closest(sel.closest), reason="no candidate was trained: every sampled "
                          "candidate violates a budget" if cands else "no candidate was recorded")
        else:
            best = sel.best
            data = self.dataset
            from chipfit.data.preprocess import Preprocessor

            pre = Preprocessor.from_dict(json.loads((self.dir / best.artifacts["preprocess"]).read_text()))
            x_test = pre(data.x_test)
            test_q = onnx_accuracy(self.dir / best.artifacts["int8"], x_test, data.y_test)
            test_f = onnx_accuracy(self.dir / best.artifacts["onnx"], x_test, data.y_test)
            robustness, field = self._robustness(best, pre, data)
            best_dir = self.dir / "best"
            best_dir.mkdir(exist_ok=True)
            for key, name in (("onnx", "model.onnx"), ("int8", "model.int8.onnx"), ("torch", "model.pt"),
                              ("preprocess", "preprocess.json")):
                shutil.copyfile(self.dir / best.artifacts[key], best_dir / name)
            measured = self.measure_finalists(best)
            best_cost = self.best_cost()
            checks = self._budget_checks(best_cost, test_q, field, measured)
            judged = [b.passed for b in checks if b.passed is not None]
            verdict = "PASS" if judged and all(judged) else "FAIL"
            report.update(
                verdict=verdict,
                budgets=[_budget_row(b, best_cost) for b in checks],
                best={"id": best.id, "config": best.config, "accuracy_int8": best.accuracy_int8,
                      "accuracy_float": best.accuracy_float, "predicted": best.predicted,
                      "artifacts": {"onnx": "best/model.onnx", "int8": "best/model.int8.onnx",
                                    "preprocess": "best/preprocess.json"}},
                test_accuracy_int8=test_q, test_accuracy_float=test_f, measured=measured,
                robustness=robustness,
                field_accuracy=None if field is None else {
                    **field, "over": self.contract.budgets.field_accuracy.over
                    if self.contract.budgets.field_accuracy else "worst",
                    "source": "measured: int8 ONNX model with ONNX Runtime on the test split under each condition"},
                accuracy_source="measured: int8 ONNX model with ONNX Runtime (CPU) on the test split",
                dataset=data.summary(),
                binding=sorted(b.name for b in checks if b.passed is False),
                closest=None if verdict == "PASS" else _closest(best),
            )
        report["wall_seconds"] = self.wall_seconds() + (time.monotonic() - t0)
        (self.dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
        return report

    def best_cost(self) -> Cost:
        """The best candidate's full predicted cost (per layer, arena plan) on the run's target."""
        best = self.best
        if best is None:
            raise ChipfitError(f"{self.dir}: no trained best candidate")
        space = create_space(self.contract.input_spec(), self.contract.num_classes)
        cand = space.candidate(ArchConfig.from_dict(best.config))
        return CostModel.for_run(self.dir).estimate(cand.graph, self.target, dtype=self.contract.dtype,
                                    frontend_ops=cand.frontend_ops, frontend_ram_bytes=cand.frontend_ram_bytes)

    def _robustness(self, best: CandidateRecord, pre: Any, data: Any) -> tuple[list[dict[str, Any]],
                                                                                 dict[str, Any] | None]:
        """Accuracy of the best int8 model on the test split under every declared condition x severity."""
        from chipfit.quantize.int8 import predict_onnx
        from chipfit.robustness.evaluate import evaluate_field, field_cases, summarize

        cases = field_cases(self.contract.field)
        if not cases:
            return [], None
        model = self.dir / best.artifacts["int8"]
        rows = evaluate_field(lambda x: predict_onnx(model, pre(x)), data.x_test, data.y_test, cases,
                              seed=self.contract.search.seed, sample_rate_hz=data.sample_rate_hz)
        return rows, summarize(rows)

    def _budget_checks(self, cost: Cost, test_acc: float, field: dict[str, Any] | None = None,
                       measured: list[dict[str, Any]] | None = None) -> list[BudgetCheck]:
        from chipfit.search.feasibility import measured_latency_check

        fa = self.contract.budgets.field_accuracy
        field_acc = None if field is None or fa is None else field[fa.over]
        checks = check_budgets(cost, self.contract, target=self.target, accuracy=test_acc, field_accuracy=field_acc)
        lat = self.contract.budgets.latency_ms
        frontend_ms = sum(layer.latency_ms for layer in cost.layers if layer.op == "dsp")
        judged = [row for row in measured or [] if row.get("role") == "best" and row.get("judged_on_target")]
        for k, row in enumerate(judged if lat is not None else []):
            m = row["measured"]
            # the nearest measured percentile at or above the contract's (p50, p90, p99)
            q = 50 if lat.percentile <= 50 else 90 if lat.percentile <= 90 else 99
            checks.append(measured_latency_check(
                lat.max, m[f"p{q}_ms"] + frontend_ms,
                f"measured p{q} of {m['runs']} runs by {m['runtime']} on {m['device']}", frontend_ms,
                name="latency_ms (measured)" + (f" #{k + 1}" if len(judged) > 1 else "")))
        return checks

    def export(self, fmt: str = "all", *, strict: bool = True) -> dict[str, list[Path]]:
        """Write deployable artifacts into ``best/`` (see :mod:`chipfit.export`)."""
        from chipfit.export import export_run

        return export_run(self, fmt, strict=strict)

    def report(self, *, export: bool = True) -> dict[str, Any]:
        """Measure the best model on the test split and write ``report.json``, the deployable artifacts
        (every exporter available here) and ``report.html``. Returns the report."""
        from chipfit.report.html import render

        report = self.finalize()
        if export and self.best is not None:
            self.export("all", strict=False)
        render(self)
        return report


def _budget_row(b: BudgetCheck, cost: Cost) -> dict[str, Any]:
    d = b.to_dict()
    if b.name in ("accuracy", "field_accuracy") and b.source == "measured":
        d["source"] = "measured (int8, ONNX Runtime, test split)"
    elif b.source == "predicted":
        calibrated = cost.efficiency_source.startswith("calibrated")
        lat = "calibrated latency" if calibrated else "analytical latency"
        if b.name in ("latency_ms", "energy_mj", "battery_days"):
            how = {"latency_ms": lat, "energy_mj": f"{lat} x the device's active power",
                   "battery_days": f"{lat} x active power + sleep power over the duty cycle"}[b.name]
            d["predicted_by"] = cost.efficiency_source
        elif b.name == "runtime_support":
            how = "ops and dtypes checked against the runtime's op list"
        else:
            how = "analytical: weights, planned arena and runtime overheads"
        d["source"] = f"predicted (cost model, {how}; {cost.basis})"
    return d


def _closest(rec: CandidateRecord | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {"id": rec.id, "config": rec.config, "state": rec.state, "reason": rec.reason,
            "accuracy_int8": rec.accuracy_int8,
            "violations": {k: v for k, v in rec.constraints.items() if v > 0}}


def create_run(contract: Contract | str | Path, *, out: str | Path | None = None, resume: bool = False) -> Run:
    """Create a run directory for ``contract`` (or open it with ``resume=True``)."""
    return Run.create(contract, out=out, resume=resume)


def load_run(directory: str | Path) -> Run:
    """Open an existing run directory."""
    return Run.load(directory)


__all__ = ["ChipfitError", "Run", "create_run", "load_run"]
