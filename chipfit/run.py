"""``Run``: the one object a user holds for a job — created from a contract, or loaded from its directory.

A thin composition: the search loop and its backend (:mod:`chipfit.search`), the run's calibration and
finalist measurement (:mod:`chipfit.report.finalists`), the typed report (:mod:`chipfit.report.build`),
the shipped bundle (:class:`~chipfit.bestmodel.BestModel`) and its exporters.

>>> import chipfit, tempfile
>>> run = chipfit.create_run("examples/digits.yaml", out=tempfile.mkdtemp() + "/r")
>>> run.dir.exists(), run.candidates
(True, [])
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from chipfit.bestmodel import BestModel
from chipfit.contract import Contract, load_contract
from chipfit.cost.calibration import CPI_RUN_FILE, Calibration
from chipfit.cost.model import Cost, CostModel
from chipfit.data.dataset import Dataset
from chipfit.errors import ChipfitError, UsageError
from chipfit.logging import LOG_FILE, get_logger, log_to_file
from chipfit.pricing import Pricer
from chipfit.runlock import owns_run
from chipfit.runreport import RunReport, TflmCheck, load_report
from chipfit.search.callbacks import SearchCallbacks
from chipfit.search.selection import Selection, pareto, select
from chipfit.space import SearchSpace, create_space
from chipfit.store import STATES, CandidateRecord, CandidateStore
from chipfit.targets.target import Target

log = get_logger(__name__)


class RunExistsError(UsageError):
    """The run directory already holds a run."""


class Run:
    """A chipfit job and its directory (contract.yaml, study.log, candidates.jsonl, best/, report.json, run.log)."""

    def __init__(self, contract: Contract, directory: Path) -> None:
        self.contract = contract
        self.dir = Path(directory)
        self.store = CandidateStore(self.dir / "candidates.jsonl")
        self._pricer: tuple[tuple[int | None, ...], Pricer] | None = None

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, contract: Contract | str | Path, *, out: str | Path | None = None, resume: bool = False) -> Run:
        c = contract if isinstance(contract, Contract) else load_contract(contract)
        directory = Path(out) if out else Path("runs") / c.name
        if (directory / "contract.yaml").exists():
            if not resume:
                raise RunExistsError(f"'{directory}' already holds a run. Resume it with 'chipfit run {directory} "
                                     "--resume', or choose another --out.")
            return cls.load(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_contract(directory, c)
        return cls(load_contract(directory / "contract.yaml"), directory)

    @classmethod
    def load(cls, directory: str | Path) -> Run:
        d = Path(directory)
        if not (d / "contract.yaml").exists():
            raise UsageError(f"'{d}' is not a chipfit run directory (no contract.yaml).")
        return cls(load_contract(d / "contract.yaml"), d)

    def update_search(self, updates: dict[str, Any]) -> Run:
        """Change the run's search settings (e.g. ``{"trials": 40, "time_budget_s": 600}`` to search on when
        resuming), validated as the contract's YAML is; the run's contract.yaml is rewritten, so the run
        records what it ran with. Only ``search`` may change: the data, target and budgets a run's
        candidates were judged on stay as they were."""
        c = self.contract.with_updates({"search": dict(updates)})
        _write_contract(self.dir, c)
        self.contract = c
        return self

    # -- state --------------------------------------------------------------------------------------------
    @property
    def target(self) -> Target:
        return self.contract.get_target()

    @functools.cached_property
    def dataset(self) -> Dataset:
        """The contract's data, loaded once per Run (finalize, exporters and references share it)."""
        from chipfit.data.sources import load_dataset

        return load_dataset(self.contract)

    @property
    def classes(self) -> tuple[str, ...]:
        """The task's classes, from the data (the one source of truth; the contract's ``classes`` must agree)."""
        return self.dataset.class_names

    @property
    def space(self) -> SearchSpace:
        return create_space(self.contract.input_spec(), len(self.classes))

    @property
    def pricer(self) -> Pricer:
        """Prices configs with the run's calibration, with the data's real classifier head (kept while the run's
        calibration files are unchanged, so the report and the HTML page price the best model once)."""
        key = tuple(p.stat().st_mtime_ns if p.is_file() else None
                    for p in (self.dir / "calibration.json", self.dir / CPI_RUN_FILE))
        if self._pricer is None or self._pricer[0] != key:
            self._pricer = (key, Pricer(self.space, self.target, cost_model=CostModel.for_run(self.dir),
                                        dtype=self.contract.dtype))
        return self._pricer[1]

    @property
    def candidates(self) -> list[CandidateRecord]:
        return self.store.load()

    def counts(self) -> dict[str, int]:
        cands = self.candidates
        return {s: sum(1 for r in cands if r.state == s) for s in STATES}

    @property
    def pareto(self) -> list[CandidateRecord]:
        """Completed candidates not dominated on (int8 accuracy up, predicted latency down)."""
        return pareto(self.candidates)

    def select(self) -> Selection:
        """Best = highest int8 validation accuracy that holds every budget; ties go to the k-fold
        cross-validation stored when the run was finalised (``crossval.json``), then to larger margins."""
        from chipfit.search.crossval import stored_tie_break

        return select(self.candidates, self.contract.budgets, stored_tie_break(self.dir))

    @property
    def best(self) -> CandidateRecord | None:
        return self.select().best

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """While the block runs, chipfit's log also goes to the run's ``run.log``."""
        with log_to_file(self.dir / LOG_FILE):
            yield

    # -- the job ------------------------------------------------------------------------------------------
    def _pin_board_cpi(self) -> None:
        """Copy a board's cycles per instruction cached by ``chipfit calibrate --serial`` for this target into
        the run (``cpi_calibration.json``) before its first candidate, so a resumed run prices as before."""
        from chipfit.cost.calibration import CPI_RUN_FILE, find_cpi_calibration
        from chipfit.targets.knowledge import split_runtime

        dest, t = self.dir / CPI_RUN_FILE, self.target
        if dest.is_file() or self.candidates:
            return
        board = find_cpi_calibration(t.name, t.core, split_runtime(t.runtime)[0], t.clock_mhz)
        if board is not None:
            board.save(dest)
            log.info("pricing with the board's cycles per instruction: %s", board.describe())

    def calibrate(self) -> Calibration | None:
        """The run's calibration (``calibration.json``), fixed before the search so a resumed run prices
        candidates as before: a calibration cached by ``chipfit calibrate`` for this target is copied in;
        otherwise one is made on the first measuring runtime (``measure.calibrate``). None when the target
        cannot be measured, or its runtime is not ONNX Runtime (what the probes run on)."""
        from chipfit.measure.calibrate import calibrate
        from chipfit.report.finalists import measuring_runtimes

        self._pin_board_cpi()
        path = self.dir / "calibration.json"
        if path.is_file():
            return Calibration.load(path)
        m, target = self.contract.measure, self.target
        runtimes = [r.build() for r in measuring_runtimes(self.contract, target)]  # read the token files now
        if not m.calibrate:
            return None
        cached = CostModel().calibration_for(target, target.runtime, self.contract.dtype)
        if cached is not None:
            log.info("using the cached calibration: %s", cached.describe())
            cached.save(path)
            return cached
        if not runtimes:
            return None
        if target.runtime != "onnxruntime":
            log.warning("not calibrating: the target's runtime is %s, but probes run on ONNX Runtime; pin "
                        "`runtime: onnxruntime` in the contract to calibrate and judge on measurements",
                        target.runtime)
            return None
        log.info("calibrating the cost model: %d probe networks on %s", m.calibration_probes,
                 runtimes[0].describe())
        # a run does not stop for a busy machine: the calibration records it and is rescaled by its reference
        # timing when used (chipfit calibrate, run by hand, refuses instead)
        cal = calibrate(target.name, runtime=runtimes[0], probes=m.calibration_probes, dtype=self.contract.dtype,
                        save=False, allow_busy=True)
        cal.save(path)
        return cal

    @owns_run
    def search(self, *, callbacks: SearchCallbacks | None = None, backend: str | None = None,
               workers: int | None = None, address: str | None = None) -> Run:
        """Run (or resume) the search until ``search.trials`` candidates are recorded or time runs out.

        ``backend``/``workers``/``address`` override the contract's search settings: ``local`` with N
        workers trains in N processes here; ``ray`` trains candidates as Ray tasks on a cluster.
        """
        from chipfit.search.backends import create_backend
        from chipfit.search.claims import prepare_resume
        from chipfit.search.loop import SearchLoop, open_study

        s = self.contract.search
        name, workers, address = backend or s.backend, workers or s.workers, address or s.address
        t0 = time.monotonic()
        deadline = t0 + s.time_budget_s if s.time_budget_s else None
        with self.logging():
            data = self.dataset  # validates the data (and the contract's classes) before anything is trained
            prepare_resume(self.dir, open_study(self.dir, s.seed, s.trials, s.sampler))  # owner lock: @owns_run
            self.calibrate()
            loop = SearchLoop(self.contract, data, self.target, self.dir, callbacks=callbacks,
                              threads=max(1, s.threads // workers) if workers > 1 and name == "local" else None)
            stopped = loop.run(create_backend(name, workers=workers, threads=s.threads, address=address),
                               deadline=deadline)
            log.info("search stopped: %s", stopped)
        self._update_state(wall=time.monotonic() - t0, stopped=stopped)
        return self

    def evaluate_reference(self, name: str) -> dict[str, Any]:
        """Train a named reference architecture (e.g. ``"resnet8"``) through the same pipeline, data and
        target, whatever its cost, and measure its int8 model on the test split (for comparison)."""
        from chipfit.quantize.int8 import onnx_accuracy
        from chipfit.runtime.preprocess import Preprocessor
        from chipfit.search.training import CandidateTrainer
        from chipfit.space import reference_config

        data = self.dataset
        trainer = CandidateTrainer(self.contract, data, self.target, self.dir)
        rec = trainer.evaluate(reference_config(name), 0, train_infeasible=True, subdir=f"references/{name}")
        out: dict[str, Any] = {"name": name, "record": rec.to_dict()}
        if rec.state == "COMPLETE":
            pre = Preprocessor.load(self.dir / rec.artifacts["preprocess"])
            out["test_accuracy_int8"] = onnx_accuracy(self.dir / rec.artifacts["int8"], pre(data.x_test), data.y_test)
        return out

    def _state(self) -> dict[str, Any]:
        p = self.dir / "run.json"
        try:
            return json.loads(p.read_text()) if p.exists() else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def _update_state(self, *, wall: float, stopped: str) -> None:
        state = self._state()
        state["wall_seconds"] = state.get("wall_seconds", 0.0) + wall
        state["stopped"] = stopped
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(self.dir / "run.json")

    def wall_seconds(self) -> float:
        return float(self._state().get("wall_seconds", 0.0))

    @owns_run
    def finalize(self, *, measure: bool = True, callbacks: SearchCallbacks | None = None) -> RunReport:
        """Select the best candidate, measure it on the test split (and its finalists on real runtimes), copy
        it to ``best/`` and write ``report.json``. Returns the typed report. ``callbacks.on_phase`` is called
        as each step begins."""
        from chipfit.report.build import RunState, build_report

        t0 = time.monotonic()
        with self.logging():
            state = RunState(self.dir, self.contract, self.target, self.dataset, self.candidates, self.pricer,
                             wall_seconds=0.0, stopped=self._state().get("stopped", ""))
            report = build_report(state, measure=measure, callbacks=callbacks)
            report = report.model_copy(update={"wall_seconds": self.wall_seconds() + time.monotonic() - t0})
            report.save(self.dir / "report.json")
        return report

    def load_report(self) -> RunReport:
        """The typed report.json of this run (a clear error when the run has not finished)."""
        return load_report(self.dir)

    def best_model(self) -> BestModel:
        """The shipped bundle of the finished run (needs report.json and best/)."""
        return BestModel.load(self.dir, dataset=lambda: self.dataset)

    def best_cost(self) -> Cost:
        """The best candidate's full predicted cost (per layer, arena plan) on the run's target."""
        best = self.best
        if best is None:
            raise ChipfitError(f"{self.dir}: no trained best candidate")
        return self.pricer.price(best.config).cost

    def export(self, fmt: str = "all", *, strict: bool = True, callbacks: SearchCallbacks | None = None,
               exclude: tuple[str, ...] = ()) -> dict[str, list[Path]]:
        """Write deployable artifacts into ``best/`` (see :mod:`chipfit.export`), all formats but ``exclude``;
        ``callbacks.on_phase`` is called as each format starts."""
        from chipfit.export import export_best
        from chipfit.search.callbacks import PHASES

        cb = callbacks or SearchCallbacks()
        with self.logging():
            return export_best(self.best_model(), fmt, strict=strict, exclude=exclude,
                               on_format=lambda name: cb.on_phase(f"{PHASES['export']} {name}"))

    def render(self, report: RunReport | None = None) -> Path:
        """Write ``report.html`` from the typed report."""
        from chipfit.report.html import render

        report = report or self.load_report()
        priced = self.pricer.price(report.best.config) if report.best else None
        return render(self.dir, report, contract=self.contract, target=self.target, records=self.candidates,
                      best_cost=priced.cost if priced else None, best_graph=priced.candidate.graph if priced else None)

    @owns_run
    def report(self, *, export: bool = True, callbacks: SearchCallbacks | None = None) -> RunReport:
        """Finalise (report.json), export every format available here, run the exported .tflite through TFLM,
        and write report.html. ``callbacks.on_phase`` is called as each step begins (see
        :data:`chipfit.search.callbacks.PHASES`)."""
        from chipfit.search.callbacks import PHASES

        cb = callbacks or SearchCallbacks()
        report = self.finalize(callbacks=cb)
        if export and report.best is not None:
            self.export("all", strict=False, callbacks=cb, exclude=("manifest",))
            if (self.dir / "best" / "model.tflite").is_file():
                cb.on_phase(PHASES["tflm"])
            check = self.check_tflm()
            if check is not None:
                report = report.model_copy(update={"tflm": check})
                report.save(self.dir / "report.json")
            self.export("manifest", strict=False, callbacks=cb)  # last: it embeds the final report
        cb.on_phase(PHASES["html"])
        self.render(report)
        return report

    def check_tflm(self) -> TflmCheck | None:
        """The exported ``best/model.tflite`` on the test split through TFLM, beside ONNX Runtime's int8 model;
        None when there is no .tflite or tflite-micro is not installed."""
        import importlib.util

        tfl = self.dir / "best" / "model.tflite"
        if not tfl.is_file() or importlib.util.find_spec("tflite_micro") is None:
            return None
        import numpy as np

        from chipfit.measure.tflm import evaluate_tflite
        from chipfit.quantize.int8 import predict_onnx
        from chipfit.runtime.preprocess import Preprocessor

        data = self.dataset
        x = Preprocessor.load(self.dir / "best" / "preprocess.json")(data.x_test)
        if not len(x):
            return TflmCheck(loaded=False, failure="the test split is empty", flagged=True)
        ref = predict_onnx(self.dir / "best" / "model.int8.onnx", x)
        acc_ort = float(np.mean(ref == data.y_test))
        try:
            with self.logging():
                ev = evaluate_tflite(tfl, x, data.y_test, reference=ref)
        except Exception as exc:  # the model TFLM cannot run is a finding of the run, not a crash
            log.warning("TFLM could not run the exported model: %s", exc)
            return TflmCheck(loaded=False, failure=f"{type(exc).__name__}: {exc}", accuracy_onnxruntime=acc_ort,
                             flagged=True)
        gap = abs(ev.accuracy - acc_ort) * 100
        return TflmCheck(loaded=True, samples=ev.n, accuracy_tflm=ev.accuracy, accuracy_onnxruntime=acc_ort,
                         agreement=ev.agreement, gap_points=gap, flagged=gap > 1.0)


def _write_contract(directory: Path, c: Contract) -> None:
    """The resolved contract, as run: the loaded contract's paths are absolute already, so it is the plain dump."""
    resolved = c.model_dump(mode="json", exclude={"base_dir"})
    tmp = directory / "contract.yaml.tmp"
    tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))
    tmp.replace(directory / "contract.yaml")


def create_run(contract: Contract | str | Path, *, out: str | Path | None = None, resume: bool = False) -> Run:
    """Create a run directory for ``contract`` (or open it with ``resume=True``)."""
    return Run.create(contract, out=out, resume=resume)


def load_run(directory: str | Path) -> Run:
    """Open an existing run directory."""
    return Run.load(directory)


__all__ = ["Run", "RunExistsError", "create_run", "load_run"]
