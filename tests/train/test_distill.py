"""Distillation teacher: trained once per dataset, input recipe and seed, then reused from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chipfit.space.config import ArchConfig
from chipfit.train.distill import TrainedTeacher, load_or_train, teacher_config, teacher_root

CFG = ArchConfig("dscnn", {"width": 8})


def _trainer(calls: list[int], rows: int = 5):
    def train() -> TrainedTeacher:
        calls.append(1)
        return TrainedTeacher(np.full((rows, 3), float(len(calls)), np.float32), 0.9, 2, 0.1, {})

    return train


def test_second_call_reuses_the_cached_teacher(tmp_path: Path) -> None:
    calls: list[int] = []
    parts = {"fingerprint": "abc", "input_recipe": {"shape": [1, 8, 8]}, "seed": 0}
    first = load_or_train(tmp_path, parts, CFG, _trainer(calls))
    again = load_or_train(tmp_path, parts, CFG, _trainer(calls))
    assert calls == [1] and not first.cached and again.cached
    assert again.key == first.key and np.array_equal(again.logits, first.logits)
    assert json.loads((first.path / "teacher.json").read_text())["rows"] == 5
    other = load_or_train(tmp_path, {**parts, "seed": 1}, CFG, _trainer(calls))  # another seed: another teacher
    assert other.key != first.key and not other.cached and len(calls) == 2
    (first.path / "logits.npy").write_bytes(b"torn")  # an unreadable entry is trained again
    assert not load_or_train(tmp_path, parts, CFG, _trainer(calls)).cached and len(calls) == 3


def test_teacher_config_and_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert teacher_config("image", (8, 8, 1)).params["stem_stride"] == 1
    assert teacher_config("image", (32, 32, 3)).params["stem_stride"] == 2
    with pytest.raises(ValueError, match="no teacher"):
        teacher_config("video")
    monkeypatch.setenv("CHIPFIT_CACHE_DIR", str(tmp_path / "cache"))
    assert teacher_root("user", tmp_path / "run") == tmp_path / "cache" / "teachers"
    assert teacher_root("run", tmp_path / "run") == tmp_path / "run" / "teachers"


def test_candidate_trainer_trains_the_teacher_once_and_students_record_it(tmp_path: Path) -> None:
    from chipfit import load_contract
    from chipfit.data.sources import load_dataset
    from chipfit.search.training import CandidateTrainer

    c = load_contract("examples/digits.yaml").with_updates(
        {"field": [], "search": {"epochs": 1, "rung_epochs": 1, "threads": 1,
                                 "recipe": {"distill": True, "teacher_epochs": 1, "teacher_cache": "run",
                                            "qat": False}}})
    data = load_dataset(c)
    cfg = ArchConfig("cnn", {"resolution": 0.5, "width": 4, "blocks": 1, "kernel": 3, "stride": 2})
    records, teachers = [], []
    for _ in range(2):  # a second trainer on the same run (a resumed run) loads the teacher
        ct = CandidateTrainer(c, data, c.get_target(), tmp_path)
        base, _ = ct.assess(cfg, 0, train_infeasible=True)
        records.append(ct.train(base, cfg, prune=False))
        teachers.append(ct.teacher())
    assert [r.state for r in records] == ["COMPLETE", "COMPLETE"]
    assert not teachers[0].cached and teachers[1].cached and teachers[0].key == teachers[1].key
    assert records[0].recipe["teacher"] == teachers[0].key and records[0].recipe["distill_alpha"] == 0.5
    assert teachers[0].logits.shape == (len(data.y_train), data.num_classes)
    assert json.loads((tmp_path / "teacher.json").read_text())["key"] == teachers[0].key
