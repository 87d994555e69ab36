"""``BestModel``: the bundle of what a run ships — the best candidate's files, its preprocessing recipe,
architecture, classes, target and the typed report. Exporters and the HTML report take this, not ``Run``.

>>> from chipfit.bestmodel import BestModel
>>> BestModel.load("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
chipfit.errors.UsageError: '/nonexistent' is not a chipfit run directory ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chipfit.contract import Contract, load_contract
from chipfit.data.dataset import Dataset
from chipfit.errors import ChipfitError, UsageError
from chipfit.runreport import RunReport, load_report
from chipfit.runtime.preprocess import Preprocessor
from chipfit.space import ArchConfig, SearchSpace, create_space
from chipfit.store import CandidateRecord, CandidateStore
from chipfit.targets.target import Target


@dataclass(frozen=True)
class BestModel:
    """A finished run's best model, ready to export. ``load_dataset`` gives the run's data when an exporter
    needs it (int8 calibration samples of the TFLite export, the drift reference of the manifest)."""

    run_dir: Path
    contract: Contract
    target: Target
    record: CandidateRecord
    report: RunReport
    preprocessor: Preprocessor
    load_dataset: Callable[[], Dataset] = field(repr=False, compare=False)

    @property
    def dir(self) -> Path:
        """``best/``: where the shipped files are."""
        return self.run_dir / "best"

    @property
    def name(self) -> str:
        return self.contract.name

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.report.classes)

    @property
    def config(self) -> ArchConfig:
        return ArchConfig.from_dict(self.record.config)

    @functools.cached_property
    def dataset(self) -> Dataset:
        return self.load_dataset()

    @property
    def space(self) -> SearchSpace:
        return create_space(self.contract.input_spec(), len(self.classes))

    def input_shape(self) -> tuple[int, ...]:
        """The network's input shape (batch 1 first, channels first)."""
        return self.space.model_input_shape(self.config)

    def torch_model(self) -> Any:
        """The trained network (PyTorch), rebuilt from its config with its real head and weights."""
        import torch

        model = self.space.build(self.config)
        model.load_state_dict(torch.load(self.dir / "model.pt", weights_only=True))
        return model.eval()

    @classmethod
    def load(cls, run_dir: str | Path, *, dataset: Callable[[], Dataset] | None = None) -> BestModel:
        """The best model of the finished run in ``run_dir`` (needs report.json and best/)."""
        d = Path(run_dir)
        if not (d / "contract.yaml").is_file():
            raise UsageError(f"'{d}' is not a chipfit run directory (no contract.yaml).")
        contract = load_contract(d / "contract.yaml")
        report = load_report(d)
        if report.best is None:
            raise ChipfitError(f"{d}: the run has no trained best candidate to export ({report.reason or 'none'}).")
        if not (d / "best" / "model.int8.onnx").is_file():
            raise ChipfitError(f"{d}: best/ is missing; run 'chipfit report {d}' (or finish the run) first.")
        by_id = {r.id: r for r in CandidateStore(d / "candidates.jsonl").load()}
        record = by_id.get(report.best.id)
        if record is None:
            raise ChipfitError(f"{d}: candidate {report.best.id} named by report.json is not in candidates.jsonl.")

        def load_data() -> Dataset:
            from chipfit.data.sources import load_dataset

            return load_dataset(contract)

        pre = Preprocessor.load(d / "best" / "preprocess.json")
        return cls(d, contract, contract.get_target(), record, report, pre, dataset or load_data)
