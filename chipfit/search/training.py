"""``CandidateTrainer``: one candidate of the search, from config to record — what every backend runs.

``assess`` prices a config on the target and judges it against every budget (an INFEASIBLE record when one breaks:
never trained). ``train`` trains a feasible one in rungs of growing epochs (``search.fidelity``: successive halving
by default), stops it at a rung where it falls behind the earlier candidates that reached it, trains the promising
on to the full epochs with early stopping, exports ONNX, quantizes to int8 and measures the int8 model's validation
accuracy (clean and under every field condition). A failure becomes a FAILED record saying whether the candidate or
the environment (disk, memory) was at fault.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chipfit.budgets import BudgetCheck, check_budgets, constraints
from chipfit.contract.schema import Contract
from chipfit.cost.model import Cost, CostModel
from chipfit.data.dataset import Dataset
from chipfit.logging import get_logger
from chipfit.pricing import Pricer
from chipfit.robustness.evaluate import apply_case, field_cases
from chipfit.runtime.preprocess import Preprocessor
from chipfit.search.callbacks import SearchCallbacks
from chipfit.space import ArchConfig, SearchSpace, create_space
from chipfit.store import CandidateRecord, CandidateStore, classify_failure
from chipfit.targets.target import Target
from chipfit.train.augment import augment
from chipfit.train.distill import Teacher

if TYPE_CHECKING:
    from chipfit.train.recipes import RecipeRunner

log = get_logger(__name__)
MIN_RUNG_PEERS = 3  # pruning at a rung starts once this many candidates have reached it


def predicted_summary(cost: Cost) -> dict[str, Any]:
    return {"latency_ms": cost.latency_ms, "energy_mj": cost.energy_mj, "ram_bytes": cost.ram_bytes,
            "flash_bytes": cost.flash_bytes, "macs": cost.macs, "params": cost.params,
            "arena_bytes": cost.arena_bytes, "runtime": cost.runtime, "basis": cost.basis}


def violations(checks: list[BudgetCheck], *, risk: str = "allow") -> str:
    """Why a candidate is infeasible: every broken budget, and with ``risk="avoid"`` every one AT RISK."""
    bad = [c for c in checks if c.passed is False]
    out = "; ".join(f"{c.name} {c.achieved:.4g} {c.unit} > limit {c.limit:.4g} {c.unit} (margin {c.margin:+.0%})"
                    if c.name != "battery_days" else
                    f"battery_days {c.achieved:.4g} < {c.limit:.4g} (margin {c.margin:+.0%})" for c in bad)
    if risk == "avoid":
        risky = [c for c in checks if c.passed and c.result == "AT RISK" and c.interval]
        out = "; ".join(x for x in [out, *(
            f"{c.name} AT RISK: {c.achieved:.4g} {c.unit} predicted ({c.predicted_by}), 80 % interval "
            f"{c.interval[0]:.4g}-{c.interval[1]:.4g} crosses the limit {c.limit:.4g} (search.risk: avoid)"
            for c in risky if c.interval)] if x)
    return out


def fidelity_rungs(rung_epochs: int, epochs: int, mode: str, eta: int) -> list[int]:
    """The epochs at which a candidate's training is judged before its full budget (``search.fidelity``).

    >>> fidelity_rungs(5, 50, "asha", 3), fidelity_rungs(5, 50, "median", 3), fidelity_rungs(5, 50, "off", 3)
    ([5, 15, 45], [5], [])
    """
    if mode == "off":
        return []
    if mode == "median":
        return [rung_epochs] if rung_epochs < epochs else []
    out, r = [], rung_epochs
    while r < epochs:
        out.append(r)
        r *= eta
    return out


def prune_reason(accuracy: float, peers: list[float], mode: str, eta: int) -> str:
    """Why a candidate stops at a rung given its ``peers``' accuracies there, or ``""`` to go on.

    >>> prune_reason(0.5, [0.4, 0.6, 0.7], "median", 3)
    'is below the median 0.600 of 3 earlier candidates at this rung'
    >>> prune_reason(0.6, [0.4, 0.6, 0.7], "asha", 3), prune_reason(0.6, [0.4, 0.6], "asha", 3)
    ('is not in the top 1/3 of 3 earlier candidates at this rung (needs 0.633)', '')
    """
    if len(peers) < MIN_RUNG_PEERS or mode == "off":
        return ""
    if mode == "median":
        m = float(np.median(peers))
        return f"is below the median {m:.3f} of {len(peers)} earlier candidates at this rung" if accuracy < m else ""
    q = float(np.quantile(peers, 1 - 1 / eta))
    return (f"is not in the top 1/{eta} of {len(peers)} earlier candidates at this rung (needs {q:.3f})"
            if accuracy < q else "")


@dataclass
class _Prepared:
    pre: Preprocessor
    x_train: np.ndarray  # clean training split, plus augmented copies when the contract declares conditions
    y_train: np.ndarray
    x_val: np.ndarray
    x_val_field: list[np.ndarray]  # validation split under each field case


class CandidateTrainer:
    """Costs, trains, quantizes and measures one candidate at a time for a run (what every backend runs)."""

    def __init__(self, contract: Contract, dataset: Dataset, target: Target, run_dir: Path, *,
                 callbacks: SearchCallbacks | None = None, cost_model: CostModel | None = None,
                 threads: int | None = None) -> None:
        self.c = contract
        self.s = contract.search if threads is None else contract.search.model_copy(update={"threads": threads})
        self.data = dataset
        self.target = target
        self.run_dir = run_dir
        self.cb = callbacks or SearchCallbacks()
        self.cm = cost_model or CostModel.for_run(run_dir)
        self.space: SearchSpace = create_space(contract.input_spec(), dataset.num_classes)  # the data's real head
        self.pricer = Pricer(self.space, target, cost_model=self.cm, dtype=contract.dtype)
        self.store = CandidateStore(run_dir / "candidates.jsonl")
        self._prepared: dict[str, _Prepared] = {}
        self.cases = field_cases(contract.field)
        fa = contract.budgets.field_accuracy
        self.field_over = fa.over if fa else "worst"
        self.optimize_field = fa is not None  # with a field budget the search optimises field accuracy
        self.stopped = ""  # why run() stopped
        self._teacher: Teacher | bool | None = False  # False: not asked for yet; None: none (off, or failed)

    # -- preprocessing, cached per input recipe ---------------------------------------------------------
    def prepared(self, config: ArchConfig) -> _Prepared:
        shape = self.space.model_input_shape(config)
        fe = self.space.frontend(config)
        key = f"{shape}|{fe}"
        if key not in self._prepared:
            d = self.data
            pre = Preprocessor.fit(d.x_train, d.modality, shape, sample_rate_hz=d.sample_rate_hz, frontend=fe,
                                  raw=d.raw)
            x_train, y_train = pre(d.x_train), d.y_train
            if self.c.field and self.s.augment and self.s.augment_rate > 0:
                xa, ya = augment(d.x_train, d.y_train, self.c.field, rate=self.s.augment_rate,
                                 rng=np.random.default_rng((self.s.seed, 7)), sample_rate_hz=d.sample_rate_hz)
                x_train, y_train = np.concatenate([x_train, pre(xa)]), np.concatenate([y_train, ya])
            field = [pre(apply_case(c, d.x_val, seed=self.s.seed, sample_rate_hz=d.sample_rate_hz))
                     for c in self.cases]
            self._prepared[key] = _Prepared(pre, x_train, y_train, pre(d.x_val), field)
        return self._prepared[key]

    def evaluate(self, config: ArchConfig, number: int, *, deadline: float | None = None,
                 train_infeasible: bool = False, subdir: str = "candidates") -> CandidateRecord:
        """Cost ``config``; train, quantize and measure it when it holds the budgets (or when
        ``train_infeasible``, used to train reference architectures for comparison)."""
        base, done = self.assess(config, number, train_infeasible=train_infeasible)
        if done is not None:
            return done
        return self.train(base, config, deadline=deadline, subdir=subdir, prune=not train_infeasible)

    def train(self, base: dict[str, Any], config: ArchConfig, *, deadline: float | None = None,
              subdir: str = "candidates", prune: bool = True,
              peers: dict[int, list[float]] | None = None) -> CandidateRecord:
        """Train an assessed candidate (``base`` from :meth:`assess`); failures become a FAILED record."""
        t0 = time.monotonic()
        try:
            return self._train(base, config, deadline, t0, subdir=subdir, prune=prune, peers=peers)
        except Exception as exc:
            kind = classify_failure(exc, self.run_dir)  # raises StoreIOError (stops the run) when the disk failed
            log.warning("candidate %d failed (%s): %s", base["id"], kind, exc)
            return CandidateRecord(**base, state="FAILED", reason=f"{type(exc).__name__}: {exc}",
                                   failure_kind=kind, wall_seconds=time.monotonic() - t0)

    def holds_cost_budgets(self, config: ArchConfig) -> bool:
        """Whether ``config``'s predicted cost holds every cost budget (AT RISK per ``search.risk``), as
        :meth:`assess` judges it."""
        checks = check_budgets(self.pricer.price(config).cost, self.c, target=self.target)
        return not any(v > 0 for v in constraints(checks, risk=self.s.risk).values())

    def assess(self, config: ArchConfig, number: int, *, train_infeasible: bool = False
               ) -> tuple[dict[str, Any], CandidateRecord | None]:
        """Cost ``config`` against the budgets. Returns the record's common fields and, when the candidate
        is settled without training (cannot be built, or INFEASIBLE), its record."""
        t0 = time.monotonic()
        base: dict[str, Any] = {"id": number, "key": config.key, "config": config.to_dict()}
        try:
            cost = self.pricer.price(config).cost
        except Exception as exc:  # a candidate that cannot be built is recorded, not fatal
            log.warning("candidate %d could not be built: %s", number, exc)
            return base, CandidateRecord(**base, state="FAILED", reason=f"build: {type(exc).__name__}: {exc}",
                                         predicted={}, constraints={}, margins={}, wall_seconds=time.monotonic() - t0)
        checks = check_budgets(cost, self.c, target=self.target)
        cons = constraints(checks, risk=self.s.risk)
        margins = {c.name: float(c.margin) for c in checks if c.margin is not None}
        pred = predicted_summary(cost)
        self.cb.on_candidate(number, config.to_dict(), pred)
        base.update(predicted=pred, constraints=cons, margins=margins)
        if any(v > 0 for v in cons.values()) and not train_infeasible:
            return base, CandidateRecord(**base, state="INFEASIBLE", reason=violations(checks, risk=self.s.risk),
                                         wall_seconds=time.monotonic() - t0)
        return base, None

    # -- training recipes, teacher, QAT (chipfit.train.recipes, chipfit.train.distill, chipfit.quantize.qat) --
    def recipe_runner(self, prep: _Prepared, *, seed: int) -> RecipeRunner:
        """The contract's training recipe for these training rows, with the teacher's logits when distilling."""
        from chipfit.train.recipes import RecipeRunner, resolve_recipe

        r = self.s.recipe
        teacher = self.teacher() if r.distill else None
        recipe = resolve_recipe(r, modality=self.data.modality, y_train=prep.y_train,
                                num_classes=self.data.num_classes, teacher=teacher is not None)
        return RecipeRunner(recipe, prep.y_train, self.data.num_classes, seed=seed,
                            teacher_logits=teacher.logits if teacher is not None else None)

    def teacher(self) -> Teacher | None:
        """The run's distillation teacher: loaded from the cache or trained once (None when it cannot be built;
        the students then train on hard labels alone, and their records say so)."""
        if self._teacher is not False:
            return self._teacher  # type: ignore[return-value]
        from chipfit.train.distill import TrainedTeacher, load_or_train, logits_of, teacher_config, teacher_root
        from chipfit.train.plan import plan_training
        from chipfit.train.recipes import RecipeRunner, resolve_recipe
        from chipfit.train.trainer import Trainer, TrainSettings

        r = self.s.recipe
        config = teacher_config(self.data.modality, tuple(self.c.input_spec().shape or ()))
        try:
            prep = self.prepared(config)
            epochs = r.teacher_epochs or self.s.epochs
            cap = r.teacher_time_s or (self.s.time_budget_s / 4 if self.s.time_budget_s else None)
            recipe = resolve_recipe(r, modality=self.data.modality, y_train=prep.y_train,
                                    num_classes=self.data.num_classes)
            parts = {"fingerprint": self.data.fingerprint, "input_recipe": prep.pre.to_dict(), "seed": self.s.seed,
                     "epochs": epochs, "batch_size": self.s.batch_size, "lr": self.s.lr, "rows": len(prep.y_train),
                     "augment": [self.s.augment, self.s.augment_rate, [f.model_dump() for f in self.c.field]],
                     "recipe": recipe.to_dict(), "time_cap_s": cap}

            def train() -> TrainedTeacher:
                import torch

                torch.manual_seed(self.s.seed * 100_003 + 99_991)
                model = self.space.build(config)
                plan = plan_training(len(prep.y_train), len(self.data.y_val), self.data.num_classes,
                                     self.s.model_copy(update={"epochs": epochs}))
                runner = RecipeRunner(recipe, prep.y_train, self.data.num_classes, seed=self.s.seed + 99_991)
                tr = Trainer(model, prep.x_train, prep.y_train, prep.x_val, self.data.y_val,
                             TrainSettings(batch_size=plan.batch_size, lr=self.s.lr, threads=self.s.threads,
                                           seed=self.s.seed + 99_991, early_stop=plan.early_stop), recipe=runner)
                runner.start(tr.opt, plan.steps)
                res = tr.fit(plan.epochs, deadline=time.monotonic() + cap if cap else None)
                return TrainedTeacher(logits_of(model, prep.x_train), res.val_accuracy, res.epochs, res.seconds,
                                      model.state_dict())

            t = load_or_train(teacher_root(r.teacher_cache, self.run_dir), parts, config, train)
        except Exception as exc:  # a teacher that cannot be trained costs the students their distillation only
            log.warning("no distillation teacher (%s: %s); students train on hard labels", type(exc).__name__, exc)
            self._teacher = None
            return None
        self._teacher = t
        with contextlib.suppress(OSError):
            (self.run_dir / "teacher.json").write_text(json.dumps(t.summary(), indent=1))
        return t

    def teacher_note(self) -> dict[str, Any]:
        """What a candidate record says about distillation: the teacher's cache key and accuracy, or why none."""
        if not self.s.recipe.distill:
            return {}
        t = self._teacher
        if not isinstance(t, Teacher):
            return {"teacher": None}
        return {"teacher": t.key, "teacher_val_accuracy": t.val_accuracy}

    def maybe_qat(self, model: Any, prep: _Prepared, shape: tuple[int, ...], out: Path, calib: np.ndarray,
                  acc_f: float, acc_q: float, *, seed: int) -> tuple[dict[str, Any] | None, float, float]:
        """Quantization-aware fine-tuning when the int8 model lost more than ``qat_threshold`` of the float
        model's validation accuracy: the fine-tuned model takes the same ONNX export, int8 quantization and ONNX
        Runtime measurement, and replaces the candidate's files only when its int8 accuracy is higher.
        Returns (what the record says, float accuracy, int8 accuracy) of the model kept."""
        r = self.s.recipe
        if not r.qat or not acc_f - acc_q > r.qat_threshold:
            return None, acc_f, acc_q
        import torch

        from chipfit.quantize.int8 import export_onnx, onnx_accuracy, quantize_int8
        from chipfit.quantize.qat import qat_finetune

        tuned, res = qat_finetune(model, prep.x_train, prep.y_train, prep.x_val, self.data.y_val,
                                  epochs=r.qat_epochs, lr=self.s.lr / 10, batch_size=self.s.batch_size, seed=seed)
        fp = export_onnx(tuned, shape, out / "model.qat.onnx")
        q = quantize_int8(fp, out / "model.qat.int8.onnx", calib)
        f_after = onnx_accuracy(fp, prep.x_val, self.data.y_val, threads=self.s.threads)
        q_after = onnx_accuracy(q, prep.x_val, self.data.y_val, threads=self.s.threads)
        kept = q_after > acc_q
        note = {"fine_tuned": True, "kept": kept, "epochs": res.epochs, "seconds": res.seconds,
                "accuracy_float_before": acc_f, "accuracy_int8_before": acc_q,
                "accuracy_float_after": f_after, "accuracy_int8_after": q_after, "threshold": r.qat_threshold}
        if kept:  # the fine-tuned model is the candidate's model from here on
            fp.replace(out / "model.onnx")
            q.replace(out / "model.int8.onnx")
            model.load_state_dict(tuned.state_dict())
            torch.save(model.state_dict(), out / "model.pt")
        else:
            fp.unlink(missing_ok=True)
            q.unlink(missing_ok=True)
        log.info("QAT: int8 validation accuracy %.3f -> %.3f (%s)", acc_q, q_after, "kept" if kept else "not kept")
        return note, (f_after if kept else acc_f), (q_after if kept else acc_q)

    def _rung_peers(self) -> dict[int, list[float]]:
        """Validation accuracies of the recorded candidates at each rung (epochs -> accuracies)."""
        peers: dict[int, list[float]] = {}
        for r in self.store.load():
            for epochs, acc in r.rungs.items():
                peers.setdefault(int(epochs), []).append(acc)
        return peers

    def _train(self, base: dict[str, Any], config: ArchConfig, deadline: float | None, t0: float, *,
               subdir: str = "candidates", prune: bool = True,
              peers: dict[int, list[float]] | None = None) -> CandidateRecord:
        import torch

        from chipfit.quantize.int8 import export_onnx, onnx_accuracy, quantize_int8
        from chipfit.train.plan import plan_training
        from chipfit.train.trainer import Trainer, TrainSettings

        prep = self.prepared(config)
        plan = plan_training(len(prep.y_train), len(self.data.y_val), self.data.num_classes, self.s)
        torch.manual_seed(self.s.seed * 100_003 + base["id"])
        model = self.space.build(config)
        trainer = Trainer(model, prep.x_train, prep.y_train, prep.x_val, self.data.y_val,
                          TrainSettings(batch_size=plan.batch_size, lr=self.s.lr, threads=self.s.threads,
                                        seed=self.s.seed + base["id"], early_stop=plan.early_stop),
                          recipe=(runner := self.recipe_runner(prep, seed=self.s.seed + base["id"])))
        runner.start(trainer.opt, plan.steps)
        rungs = fidelity_rungs(plan.rung_epochs, plan.epochs, self.s.fidelity, self.s.reduction_factor)
        self.cb.on_training(plan.epochs)
        if not prune or not plan.early_stop:  # a validation split too small to rank candidates prunes none
            peers = {}
        elif peers is None:
            peers = self._rung_peers()
        reached: dict[str, float] = {}
        first = None
        for k, rung in enumerate(rungs):
            res = trainer.fit(rung, deadline=deadline, on_epoch=self.cb.on_epoch)
            first = first or res
            reached[str(rung)] = res.val_accuracy
            why = prune_reason(res.val_accuracy, peers.get(rung, []), self.s.fidelity, self.s.reduction_factor)
            if why:
                return CandidateRecord(**base, state="PRUNED", train_seconds=res.seconds, epochs=res.epochs,
                                       rung_accuracy=first.val_accuracy, rungs=reached,
                                       accuracy_float=res.val_accuracy,
                                       reason=f"rung {k + 1} of {len(rungs)}: validation accuracy "
                                              f"{res.val_accuracy:.3f} after {res.epochs} epochs ({res.steps} "
                                              f"steps) {why}", wall_seconds=time.monotonic() - t0)
        full = trainer.fit(plan.epochs, deadline=deadline, on_epoch=self.cb.on_epoch)
        out = self.run_dir / subdir / f"{base['id']:04d}"
        out.mkdir(parents=True, exist_ok=True)
        shape = self.space.model_input_shape(config)
        fp32 = export_onnx(model, shape, out / "model.onnx")
        rng = np.random.default_rng(self.s.seed)
        calib = prep.x_train[rng.permutation(len(prep.x_train))[: self.s.calibration_samples]]
        int8 = quantize_int8(fp32, out / "model.int8.onnx", calib)
        torch.save(model.state_dict(), out / "model.pt")
        (out / "preprocess.json").write_text(json.dumps(prep.pre.to_dict()))
        acc_f = onnx_accuracy(fp32, prep.x_val, self.data.y_val, threads=self.s.threads)
        acc_q = onnx_accuracy(int8, prep.x_val, self.data.y_val, threads=self.s.threads)
        qat, acc_f, acc_q = self.maybe_qat(model, prep, shape, out, calib, acc_f, acc_q,
                                           seed=self.s.seed + base["id"])
        acc_field = None
        if self.cases:
            accs = [onnx_accuracy(int8, xf, self.data.y_val, threads=self.s.threads) for xf in prep.x_val_field]
            acc_field = float(np.min(accs) if self.field_over == "worst" else np.mean(accs))
        rel = {k: str(p.relative_to(self.run_dir)) for k, p in (("onnx", fp32), ("int8", int8),
                                                                ("torch", out / "model.pt"),
                                                                ("preprocess", out / "preprocess.json"))}
        reason = f"trained {full.epochs} epochs, {full.steps} steps ({full.stopped}; {plan.describe()})"
        return CandidateRecord(**base, state="COMPLETE", reason=reason,
                               train_seconds=full.seconds + (qat["seconds"] if qat else 0.0), epochs=full.epochs,
                               rung_accuracy=first.val_accuracy if first else None, rungs=reached,
                               accuracy_float=acc_f, accuracy_int8=acc_q, accuracy_field_int8=acc_field,
                               artifacts=rel, recipe={**runner.recipe.to_dict(), **self.teacher_note()}, qat=qat,
                               wall_seconds=time.monotonic() - t0)
