"""The search loop's small interfaces: samplers chosen by name, and backends driven alike by one loop."""

from __future__ import annotations

import optuna
import pytest

from chipfit.errors import UsageError
from chipfit.search.backends import InProcessBackend, ProcessPoolBackend, RayBackend, TrainJob, create_backend
from chipfit.search.loop import create_sampler
from chipfit.store import CandidateRecord


@pytest.mark.parametrize(("name", "cls"), [("tpe", optuna.samplers.TPESampler),
                                           ("nsga2", optuna.samplers.NSGAIISampler),
                                           ("random", optuna.samplers.RandomSampler)])
def test_samplers_by_name(name, cls):
    assert isinstance(create_sampler(name, seed=0, trials=12), cls)


def test_an_unknown_sampler_says_what_is_known():
    with pytest.raises(UsageError, match="Did you mean 'nsga2'"):
        create_sampler("nsga", seed=0, trials=12)


def test_backends_by_settings():
    assert isinstance(create_backend("local", workers=1, threads=2), InProcessBackend)
    pool = create_backend("local", workers=3, threads=6)
    assert isinstance(pool, ProcessPoolBackend) and pool.slots == 3 and pool.threads == 2
    assert isinstance(create_backend("ray", workers=2, threads=1), RayBackend)
    with pytest.raises(UsageError, match="expected local or ray"):
        create_backend("dask", workers=1, threads=1)


class _Trainer:
    """Stands in for CandidateTrainer: records what it was asked to train."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[int, tuple[float, ...]]]] = []

    def train(self, base, config, *, deadline, peers):
        self.calls.append((base["id"], dict(peers)))
        return CandidateRecord(**base, state="COMPLETE", reason="ok", accuracy_int8=0.5)


def test_the_in_process_backend_trains_what_is_submitted_in_order():
    trainer, backend = _Trainer(), InProcessBackend()
    backend.start(trainer)  # type: ignore[arg-type]
    for i in range(3):
        base = {"id": i, "key": f"k{i}", "config": {"family": "cnn"}, "predicted": {}, "constraints": {},
                "margins": {}}
        backend.submit(TrainJob(i, base, {"family": "cnn", "width": 8}, {5: (0.1 * i,)}, None))
    done = [backend.wait()[0] for _ in range(3)]
    assert [job.number for job, _ in done] == [0, 1, 2]
    assert [rec.id for _, rec in done] == [0, 1, 2] and trainer.calls[2] == (2, {5: (0.2,)})
