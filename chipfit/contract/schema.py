"""The contract's schema (pydantic v2, frozen, unknown keys forbidden).

Structure only; checks that need the outside world (does the device exist, does the data path exist, does
the runtime run on that core) live in :mod:`chipfit.contract.loader`, so every problem is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuiltinData(_Model):
    source: Literal["builtin"]
    name: Literal["digits"] = "digits"
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.15


class ArraysData(_Model):
    """An ``.npz`` with x_train/y_train/x_test/y_test (or x/y), or a CSV of features with a label column."""

    source: Literal["arrays"]
    path: str
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.15
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    label_column: str = "label"


class FolderData(_Model):
    """Class subfolders under ``path``, or a CSV ``manifest`` (relative to ``path``) with path/label/split columns."""

    source: Literal["image-folder", "audio-folder"]
    path: str
    manifest: str | None = None
    path_column: str = "path"
    label_column: str = "label"
    split_column: str = "split"
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.15
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    skip_corrupt: bool = False


DataSpec = Annotated[BuiltinData | ArraysData | FolderData, Field(discriminator="source")]


class InputSpec(_Model):
    """What one inference consumes, before any front-end."""

    modality: Literal["image", "audio", "series"]
    shape: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1, max_length=3)] | None = None
    sample_rate_hz: Positive | None = None
    duration_s: Positive | None = None
    channels: Annotated[int, Field(gt=0)] = 1

    @model_validator(mode="after")
    def _enough(self) -> InputSpec:
        if self.modality == "audio" and self.shape is None and (self.sample_rate_hz is None or self.duration_s is None):
            raise ValueError("for audio, 'sample_rate_hz' and 'duration_s' (or a 'shape')")
        if self.modality != "audio" and self.shape is None:
            raise ValueError(f"for {self.modality} input, a 'shape' (e.g. [32, 32, 3] or [128, 3])")
        return self


class Task(_Model):
    kind: Literal["classification"] = "classification"
    data: DataSpec
    input: InputSpec | None = None
    classes: Annotated[int, Field(ge=2)] | None = None


class Latency(_Model):
    max: Positive
    percentile: Annotated[float, Field(gt=0, le=100)] = 90


class FieldAccuracy(_Model):
    min: Fraction
    over: Literal["worst", "mean"] = "worst"


class Budgets(_Model):
    latency_ms: Latency | None = None
    energy_mj: Positive | None = None
    ram_kb: Positive | None = None
    flash_kb: Positive | None = None
    accuracy: Fraction | None = None
    field_accuracy: FieldAccuracy | None = None

    @field_validator("latency_ms", mode="before")
    @classmethod
    def _scalar_latency(cls, v: Any) -> Any:
        return {"max": v} if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("field_accuracy", mode="before")
    @classmethod
    def _scalar_field(cls, v: Any) -> Any:
        return {"min": v} if isinstance(v, int | float) and not isinstance(v, bool) else v


class DutyCycle(_Model):
    inferences_per_second: Positive | None = None
    inferences_per_hour: Positive | None = None
    battery_mah: Positive
    battery_volts: Annotated[float, Field(gt=0, le=48)] = 3.0
    min_battery_days: Positive

    @model_validator(mode="after")
    def _rate(self) -> DutyCycle:
        if (self.inferences_per_second is None) == (self.inferences_per_hour is None):
            raise ValueError("exactly one of 'inferences_per_second' or 'inferences_per_hour'")
        return self

    @property
    def rate_hz(self) -> float:
        return self.inferences_per_second or (self.inferences_per_hour or 0) / 3600.0


class FieldConditionSpec(_Model):
    name: str
    severity: Annotated[float, Field(ge=0)] | None = None
    range: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None

    @model_validator(mode="after")
    def _one(self) -> FieldConditionSpec:
        if (self.severity is None) == (self.range is None):
            raise ValueError("exactly one of 'severity' or 'range' ([low, high])")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError("a range as [low, high] with low <= high")
        return self


def _switch(on: str, off: str = "off") -> Callable[[Any], Any]:
    """A ``mode="before"`` converter letting YAML booleans stand for a switch's modes (``true`` -> ``on``)."""

    def convert(v: Any) -> Any:
        return (on if v else off) if isinstance(v, bool) else v

    return convert


class RecipeSettings(_Model):
    """Training recipes for tiny models; every one can be switched off for an ablation.

    ``auto`` picks by modality and data: ``mixup`` mixes images (MixUp and CutMix, one per batch) and sensor
    windows (MixUp), not audio features, which get ``specaugment`` (one time and one frequency mask on a
    ``mix_prob`` share of the batches) instead;
    ``one_cycle`` warms the learning rate up from a tenth of ``search.lr`` to ``one_cycle_peak`` times it over the
    first quarter of the steps and anneals it to a hundredth of the peak; ``balance`` weights the loss by inverse
    class frequency when the largest class has at least
    ``balance_ratio`` times the samples of the smallest (``sampler`` draws batches class-balanced instead).
    ``distill`` trains one larger teacher per dataset and input recipe (cached, see ``teacher_cache``) and
    trains students on ``1 - distill_alpha`` hard labels plus ``distill_alpha`` of the teacher's logits
    softened at ``distill_temperature``. ``qat`` fine-tunes, with fake quantization, a candidate whose int8
    validation accuracy falls more than ``qat_threshold`` below its float accuracy, for ``qat_epochs`` epochs;
    the fine-tuned model goes through the same int8 export and is kept only when it measures better.

    Defaults follow ``bench/recipes.py`` (fixed architectures, 15 epochs, 2 seeds; int8 test accuracy): one-cycle,
    label smoothing, MixUp/CutMix, class balancing and QAT are on; ``specaugment`` and ``distill`` are off, as
    they lowered accuracy at that budget (fsdd with every other recipe on: 0.900 with both, 0.918 without
    SpecAugment, 0.913 without distillation; alone, distillation lowered digits, HAR and fsdd by 1-3 points)."""

    one_cycle: bool = True
    one_cycle_peak: Annotated[float, Field(ge=1, le=100)] = 3.0  # peak learning rate, times search.lr
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1
    mixup: Literal["auto", "off", "mixup", "cutmix", "mixup+cutmix"] = "auto"
    mixup_alpha: Annotated[float, Field(gt=0, le=10)] = 0.2
    cutmix_alpha: Annotated[float, Field(gt=0, le=10)] = 1.0
    mix_prob: Fraction = 0.5  # share of batches mixed (MixUp/CutMix) or masked (SpecAugment)
    specaugment: Literal["auto", "on", "off"] = "off"  # off by default: see the class docstring
    balance: Literal["auto", "off", "loss", "sampler"] = "auto"
    balance_ratio: Annotated[float, Field(ge=1)] = 1.5
    distill: bool = False  # off by default: see the class docstring
    distill_alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    distill_temperature: Annotated[float, Field(gt=0, le=100)] = 4.0
    teacher_epochs: Annotated[int, Field(ge=1, le=10_000)] | None = None  # None: the search's ``epochs``
    # wall-clock cap on training the teacher; None: a quarter of search.time_budget_s (no cap without one)
    teacher_time_s: Positive | None = None
    teacher_cache: Literal["user", "run"] = "user"  # user: chipfit's cache dir (shared by runs); run: the run dir
    qat: bool = True
    qat_threshold: Annotated[float, Field(ge=0, le=1)] = 0.01
    qat_epochs: Annotated[int, Field(ge=1, le=1_000)] = 4

    _mixup = field_validator("mixup", mode="before")(_switch("auto"))
    _spec = field_validator("specaugment", mode="before")(_switch("on"))
    _balance = field_validator("balance", mode="before")(_switch("loss"))


class SearchSettings(_Model):
    """How the search runs. Multi-fidelity (``fidelity``): with ``asha`` (asynchronous successive halving) a candidate
    trains to rungs of ``rung_epochs``, ``rung_epochs x reduction_factor``, ... below ``epochs``, and goes on past a
    rung only when its validation accuracy there is in the top ``1 / reduction_factor`` of the earlier candidates
    that reached it; ``median`` has one rung (``rung_epochs``) and prunes below the median; ``off`` trains every
    feasible candidate to ``epochs`` (early stopping still applies). A small training set gets its budget in
    optimizer steps (``min_epoch_steps`` per epoch) and, with a validation split under ``early_stop_min_val``, a
    fixed step budget without early stopping or pruning (:mod:`chipfit.train.plan`)."""

    trials: Annotated[int, Field(ge=1, le=100_000)] = 30
    time_budget_s: Positive | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    backend: Literal["local", "ray"] = "local"
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"  # Optuna's TPE, NSGA-II, or random sampling
    workers: Annotated[int, Field(ge=1, le=1024)] = 1
    address: str | None = None
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 30
    rung_epochs: Annotated[int, Field(ge=1, le=10_000)] = 5
    fidelity: Literal["asha", "median", "off"] = "asha"
    reduction_factor: Annotated[int, Field(ge=2, le=10)] = 3  # ASHA's eta: the top 1/eta go on at each rung
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 64
    lr: Annotated[float, Field(gt=0, le=10)] = 3e-3
    # small data (see chipfit.train.plan): an epoch of the budget is at least this many optimizer steps (several
    # passes over a small training set; 0: one pass), and early stopping / rung-1 pruning need a validation split
    # of at least this many samples (and 5 per class); below it the fixed step budget is trained
    min_epoch_steps: Annotated[int, Field(ge=0, le=100_000)] = 16
    early_stop_min_val: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    threads: Annotated[int, Field(ge=1, le=512)] = 2
    calibration_samples: Annotated[int, Field(ge=8, le=100_000)] = 256
    augment: bool = True  # train with the declared field conditions as augmentation
    augment_rate: Annotated[float, Field(ge=0, le=4)] = 0.5  # augmented copies per training sample
    # a candidate whose predicted latency/energy interval crosses a budget (AT RISK): avoid = never trained
    # (judged at the interval's unfavourable end), allow = judged on the point prediction
    risk: Literal["allow", "avoid"] = "avoid"
    # the first trials are every family's reference analogue scaled down to hold the cost budgets
    warm_start: bool = True
    recipe: RecipeSettings = RecipeSettings()  # training recipes (see RecipeSettings)


class AgentSpec(_Model):
    """A device agent (``chipfit agent`` on the board) that runs the target's runtime."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/[^\s]*)?$")]
    token_file: Annotated[str, Field(min_length=1)]
    name: str | None = None


class MeasureSettings(_Model):
    """Measurement on real runtimes. A run whose target is ``host``, or that lists ``agents``, calibrates its
    cost model on ``calibration_probes`` generated networks before searching (``calibrate``), and measures
    its ``finalists`` (the best model and the fastest Pareto models) at the end: on this machine for
    ``host``, on every agent otherwise. The report shows predicted beside measured."""

    agents: list[AgentSpec] = []
    calibrate: bool = True
    calibration_probes: Annotated[int, Field(ge=3, le=6000)] = 2700  # = chipfit.measure.calibrate.DEFAULT_PROBES
    finalists: Annotated[int, Field(ge=0, le=50)] = 3


class Contract(_Model):
    """A validated, frozen contract. Load one with :func:`chipfit.load_contract`.

    >>> from chipfit import load_contract
    >>> c = load_contract({"name": "demo", "task": {"data": {"source": "builtin"}},
    ...                    "target": "stm32l4r5", "budgets": {"latency_ms": 20, "ram_kb": 64}})
    >>> c.budgets.latency_ms.max, c.get_target().name
    (20.0, 'stm32l4r5')
    """

    name: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: str = ""
    task: Task
    target: Any
    runtime: str | None = None
    dtype: Literal["int8", "float32"] = "int8"
    budgets: Budgets = Budgets()
    duty_cycle: DutyCycle | None = None
    field: list[FieldConditionSpec] = []
    search: SearchSettings = SearchSettings()
    measure: MeasureSettings = MeasureSettings()

    # set by the loader: the folder relative paths were resolved from (the loaded contract's paths are absolute)
    base_dir: str = "."
    # the Target the loader resolved while validating, keyed by what it was resolved from
    _target: Any = PrivateAttr(default=None)
    _target_key: Any = PrivateAttr(default=None)

    @field_validator("target")
    @classmethod
    def _target_shape(cls, v: Any) -> Any:
        if not isinstance(v, str | dict) or (isinstance(v, str) and not v.strip()):
            raise ValueError("a device name (e.g. stm32h743), a path to a target file, or a mapping of target facts")
        return v

    def _key(self) -> str:
        import json

        return json.dumps([self.target, self.runtime, self.base_dir], sort_keys=True, default=str)

    def keep_target(self, target: Any) -> None:
        """Keep the Target resolved while validating (the loader calls this), so it is resolved once."""
        self._target, self._target_key = target, self._key()

    def get_target(self):  # noqa: ANN201 - imported lazily to keep the schema light
        """The resolved Target (with the contract's runtime pinned, if it names one). Resolved once: by the
        loader, or on first use for a contract changed with ``model_copy(update=...)``."""
        if self._target is None or self._target_key != self._key():
            from chipfit.contract.target import resolve_target

            self.keep_target(resolve_target(self))
        return self._target

    def with_updates(self, updates: dict[str, Any]) -> Contract:
        """A new contract: this one with ``updates`` deep-merged in (nested mappings merge key by key; any
        other value, a list included, replaces), validated exactly as the YAML is, so every problem is
        reported at once as a :class:`~chipfit.errors.ContractError`. Paths stay absolute; the resolved
        target is kept when ``target`` and ``runtime`` are unchanged. The contract itself is frozen.

        >>> from chipfit import load_contract
        >>> c = load_contract("examples/digits.yaml")
        >>> small = c.with_updates({"search": {"trials": 8, "time_budget_s": 120}})
        >>> small.search.trials, small.search.time_budget_s, small.search.seed, c.search.trials
        (8, 120.0, 0, 24)
        >>> small.get_target() is c.get_target()
        True
        >>> c.with_updates({"search": {"trials": 0}})  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        chipfit.errors.ContractError: 1 problem in the contract:
          search.trials: expected greater than or equal to 1; given 0
        """
        data = _deep_merge(self.model_dump(mode="json", exclude={"base_dir"}), updates)
        new = _LOADER["load"](data, base_dir=self.base_dir)
        if self._target is not None and new._key() == self._target_key:
            new.keep_target(self._target)
        return new

    def input_spec(self) -> InputSpec:
        """The input description, with the built-in dataset's defaults filled in."""
        if self.task.input is not None:
            return self.task.input
        return InputSpec(modality="image", shape=[8, 8, 1])


#: The loader validates a changed contract as it validates YAML; it registers itself here when imported (the
#: package imports it first), as the loader depends on this module and not the other way round.
_LOADER: dict[str, Callable[..., Contract]] = {}


def _deep_merge(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``updates`` merged in: mappings key by key, anything else replaced.

    >>> _deep_merge({"search": {"trials": 24, "seed": 0}}, {"search": {"trials": 8}, "dtype": "float32"})
    {'search': {'trials': 8, 'seed': 0}, 'dtype': 'float32'}
    """
    out = dict(base)
    for k, v in updates.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
