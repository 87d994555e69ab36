"""The constraint-first search loop.

Per trial: sample a config (Optuna, multi-objective: int8 accuracy up, predicted latency down) -> cost it -> if any
budget is violated, record ``INFEASIBLE`` with the violations and never train it -> otherwise train it in rungs of
growing epochs (multi-fidelity, ``search.fidelity``), pruning it at a rung where it falls behind the earlier
candidates that reached it; train the promising on to the full epochs -> export ONNX, quantize to int8, measure int8
validation accuracy with ONNX Runtime -> ``COMPLETE``. Budgets are set as Optuna constraints (``<= 0`` holds).
Duplicate configs are answered from the record, never retrained; when the sampler keeps proposing recorded
configs (:data:`REPEATS_BEFORE_RANDOM` in a row), the loop enqueues an unseen config drawn at random from the
space, so a sampler that has converged does not end the search with budget left, and the search stops as
exhausted only when :data:`RANDOM_DRAWS` random draws find no unseen config either. A family whose candidate fails for a
structural reason (cannot be built, shapes do not fit) is excluded once, logged and kept in ``excluded.json``;
its later samples are neither trained nor recorded. Storage is a journal file in the run directory, so a
killed run resumes without losing or retraining a finished candidate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from chipfit.logging import get_logger
from chipfit.search.backends import Backend, InProcessBackend, TrainJob
from chipfit.search.claims import Claims
from chipfit.search.structural import Exclusions, structural_cause
from chipfit.search.training import CandidateTrainer
from chipfit.space import ArchConfig
from chipfit.store import CandidateRecord

log = get_logger(__name__)
STUDY_NAME = "chipfit"
REPEATS_BEFORE_RANDOM = 10  # the sampler's proposals of recorded configs in a row before an unseen random one
RANDOM_DRAWS = 500  # random draws tried for an unseen config before the space counts as exhausted


SAMPLERS = ("tpe", "nsga2", "random")


def create_sampler(name: str, *, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """``search.sampler``: TPE (default), NSGA-II, or random, all seeded. TPE and NSGA-II read the budgets'
    constraint values that the loop sets on every trial (``trial.set_constraint``), so they learn to avoid
    infeasible regions."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(4, min(10, trials // 3)))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, trials // 3)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    from chipfit.errors import UsageError
    from chipfit.naming import did_you_mean

    raise UsageError(f"unknown search.sampler '{name}': expected one of {', '.join(SAMPLERS)}."
                     f"{did_you_mean(name, SAMPLERS)}")


def open_study(run_dir: Path, seed: int, trials: int, sampler: str = "tpe") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(run_dir / "study.log")))
    return optuna.create_study(study_name=STUDY_NAME, storage=storage,
                               sampler=create_sampler(sampler, seed=seed, trials=trials), load_if_exists=True,
                               directions=["maximize", "minimize"])


class SearchLoop(CandidateTrainer):
    """The driver: samples, costs and claims candidates, has backends train the feasible ones, records all."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopped = ""  # why run() stopped
        self.excluded = Exclusions(self.run_dir)  # families that failed structurally (chipfit.search.structural)
        self._explorer: optuna.Study | None = None  # draws unseen configs at random (:meth:`enqueue_unseen`)
        self._pending: set[str] = set()  # keys enqueue_unseen enqueued that the study has not asked yet

    def objective_accuracy(self, rec: CandidateRecord) -> float:
        value = rec.accuracy_field_int8 if self.optimize_field else rec.accuracy_int8
        return float(value or 0.0)

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, backend: Backend | None = None, *, deadline: float | None = None) -> str:
        """Ask, claim, cost and record candidates, training the feasible ones on ``backend`` (in this process by
        default), until ``trials`` are recorded, the ``deadline`` (``time.monotonic()``) passes or the space
        looks exhausted. Returns why the search stopped (:attr:`stopped`)."""
        backend = backend or InProcessBackend()
        study = open_study(self.run_dir, self.s.seed, self.s.trials, self.s.sampler)
        if self.s.warm_start and not study.trials and not self.store.load():
            self.warm_start(study)
        claims = Claims(self.run_dir)
        self.cb.on_start(self.s.trials, len(self.store.load()))
        repeats = [0]
        inflight: dict[int, optuna.Trial] = {}
        exhausted = False
        backend.start(self)
        try:
            while True:
                while not exhausted and len(inflight) < backend.slots:
                    nxt = self.next_candidate(study, claims, deadline, repeats)
                    if nxt is None:
                        exhausted = True
                        break
                    trial, config = nxt
                    base, done = self.assess(config, trial.number)
                    if done is not None:
                        self.record(study, trial, done)
                        continue
                    left = None if deadline is None else max(deadline - time.monotonic(), 1.0)
                    peers = {k: tuple(v) for k, v in self._rung_peers().items()}
                    backend.submit(TrainJob(trial.number, base, config.to_dict(), peers, left))
                    inflight[trial.number] = trial
                if not inflight:
                    break
                for job, rec in backend.wait():
                    self.record(study, inflight.pop(job.number), rec)
        finally:
            backend.close()
        return self.stopped

    def warm_start(self, study: optuna.Study) -> list[ArchConfig]:
        """Enqueue every family's reference analogue, scaled down to hold the cost budgets
        (:mod:`chipfit.search.warmstart`), as the study's first trials."""
        from chipfit.search.warmstart import trial_params, warm_start_configs

        configs = warm_start_configs(self.space, self.holds_cost_budgets)
        for cfg in configs:
            study.enqueue_trial(trial_params(cfg), skip_if_exists=True)
        log.info("warm start: %d scaled reference-family configs first (%s)", len(configs),
                 ", ".join(c.key for c in configs) or "none fits")
        return configs

    def next_candidate(self, study: optuna.Study, claims: Claims, deadline: float | None,
                       repeats: list[int]) -> tuple[optuna.Trial, ArchConfig] | None:
        """The next sampled config this worker has claimed, or ``None`` when the run should stop (all slots
        claimed, time used, every family excluded, or the space exhausted); :attr:`stopped` says which.

        ``repeats[0]`` counts the sampler's proposals of configs already recorded, claimed or excluded since it
        last proposed a new one; from :data:`REPEATS_BEFORE_RANDOM` on, every repeat is followed by an unseen
        config drawn at random (:meth:`enqueue_unseen`), which the study asks next."""
        while True:
            if all(f in self.excluded for f in self.space.families):
                self.stopped = ("every family is excluded after a structural failure: "
                                + "; ".join(f"{f} (candidate {v['candidate']})" for f, v in
                                            self.excluded.families.items()))
                log.warning(self.stopped)
                return None
            if deadline is not None and time.monotonic() >= deadline:
                self.stopped = f"time budget of {self.s.time_budget_s:g} s used"
                log.info(self.stopped)
                return None
            if repeats[0] >= 10 * max(self.s.trials, RANDOM_DRAWS):  # backstop: nothing new comes of asking
                self.stopped = f"nothing left to sample: the last {repeats[0]} samples repeated configs already seen"
                log.info(self.stopped)
                return None
            if repeats[0] >= REPEATS_BEFORE_RANDOM and not self._pending:
                unseen = self.enqueue_unseen(study, claims)
                if unseen is None:
                    self.stopped = (f"search space exhausted: the sampler keeps proposing recorded configs and "
                                    f"{RANDOM_DRAWS} random draws found none unseen")
                    log.info(self.stopped)
                    return None
            trial = study.ask()
            config = self.space.sample(trial)
            trial.set_user_attr("key", config.key)
            from_sampler = config.key not in self._pending  # proposed by the sampler, not by enqueue_unseen
            self._pending.discard(config.key)
            if config.family in self.excluded:  # failed structurally before: neither trained nor recorded
                self.excluded.skipped(config.family)
                study.tell(trial, state=TrialState.FAIL)
                repeats[0] += from_sampler
                continue
            records = {r.key: r for r in self.store.load()}  # other workers' results too
            if config.key in records:  # duplicate: answer from the record, never retrain
                self._tell_from(study, trial, records[config.key])
                repeats[0] += from_sampler
                continue
            state = claims.claim(config.key, self.s.trials)
            if state == "claimed":
                # a new config from the sampler resets the count; after a random one, the sampler gets one ask
                # before the next random config
                repeats[0] = 0 if from_sampler else REPEATS_BEFORE_RANDOM - 1
                return trial, config
            study.tell(trial, state=TrialState.FAIL if state == "taken" else TrialState.PRUNED)
            if state == "full":
                self.stopped = f"all {self.s.trials} trials recorded"
                return None
            repeats[0] += from_sampler

    def enqueue_unseen(self, study: optuna.Study, claims: Claims) -> ArchConfig | None:
        """Enqueue a config drawn at random from the space (seeded by the search seed) that is neither recorded,
        claimed nor of an excluded family, so the study asks it next; ``None`` when :data:`RANDOM_DRAWS` draws
        find none."""
        from chipfit.search.warmstart import trial_params

        if self._explorer is None:  # the first time: say so once
            log.info("the sampler proposed %d recorded configs in a row: each repeat is now followed by an unseen "
                     "config drawn at random", REPEATS_BEFORE_RANDOM)
            self._explorer = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=self.s.seed + 1))
        seen = {r.key for r in self.store.load()} | claims.keys()
        for _ in range(RANDOM_DRAWS):
            draw = self._explorer.ask()
            config = self.space.sample(draw)
            self._explorer.tell(draw, state=TrialState.FAIL)
            if config.family not in self.excluded and config.key not in seen:
                study.enqueue_trial(trial_params(config))
                self._pending.add(config.key)
                log.debug("unseen random config next: %s", config.key)
                return config
        return None

    def record(self, study: optuna.Study, trial: optuna.Trial, record: CandidateRecord) -> None:
        self.store.append(record)
        cause = structural_cause(record.state, record.failure_kind, record.reason)
        if cause is not None:
            self.excluded.note(str(record.config.get("family")), record.id, cause, record.reason)
        self._tell_from(study, trial, record)
        self.cb.on_record(record, len(self.store.load()))

    def _tell_from(self, study: optuna.Study, trial: optuna.Trial, rec: CandidateRecord) -> None:
        for name, value in rec.constraints.items():
            trial.set_constraint(name, value)
        if rec.state == "COMPLETE":
            study.tell(trial, [self.objective_accuracy(rec), rec.predicted.get("latency_ms", 0.0)])
        elif rec.state == "INFEASIBLE":
            study.tell(trial, [0.0, rec.predicted.get("latency_ms", 0.0)])
        elif rec.state == "PRUNED":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)
