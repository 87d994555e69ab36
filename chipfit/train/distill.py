"""Knowledge distillation: one larger, unconstrained teacher per dataset, trained once and cached.

The teacher is a wide DS-CNN of the contract's own search space (it ignores every budget) with one fixed input
recipe (resolution, front-end). It is trained on the same training rows as the students (the clean split plus
the field-condition copies, which every input recipe derives from the same raw samples in the same order), so
its logits, computed once, line up with any student's training rows whatever the student's front-end.

The cache key hashes the dataset fingerprint, the teacher's input recipe (its preprocessing, as shipped), the
seed, the teacher architecture and its training settings. The cache lives in chipfit's user cache directory
(``$CHIPFIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/chipfit``, else ``~/.cache/chipfit``) under ``teachers/<key>``,
so repeated runs on one dataset (an ablation, a resumed run) train it once; with ``search.recipe.teacher_cache:
run`` it lives in the run directory (``<run>/teachers/<key>``) instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.logging import get_logger
from chipfit.space.config import ArchConfig

log = get_logger(__name__)
CACHE_VERSION = 1

#: the teacher per modality: a wide DS-CNN of each space (every value is one of the space's choices)
TEACHERS: dict[str, dict[str, Any]] = {
    "image": {"resolution": 1.0, "width": 64, "blocks": 4, "kernel": 3, "stem_stride": 1, "downsample": 2},
    "audio": {"frame_ms": 40, "hop_ms": 20, "n_mfcc": 13, "width": 64, "blocks": 4, "kernel": 3,
              "stem_kernel": "10x4", "stem_stride": 2, "downsample": 0},
    "series": {"spectral_bands": 0, "width": 48, "blocks": 4, "kernel": 9, "stem_kernel": 9, "stem_stride": 2,
               "downsample": 1},
}


def teacher_config(modality: str, input_shape: tuple[int, ...] | None = None) -> ArchConfig:
    """The teacher architecture for a modality; small images (≤ 16 px) keep full resolution in the stem."""
    if modality not in TEACHERS:
        raise ValueError(f"no teacher for modality '{modality}'; known: {', '.join(TEACHERS)}")
    params = dict(TEACHERS[modality])
    if modality == "image" and input_shape is not None and min(input_shape[:2]) > 16:
        params["stem_stride"] = 2
    return ArchConfig("dscnn", params)


@dataclass(frozen=True)
class Teacher:
    """A trained teacher: its logits on every training row, and what it cost (``cached``: loaded, not trained)."""

    key: str
    config: dict[str, Any]
    logits: np.ndarray
    val_accuracy: float
    epochs: int
    train_seconds: float
    path: Path
    cached: bool

    def summary(self) -> dict[str, Any]:
        """What the run records about its teacher."""
        return {"key": self.key, "config": self.config, "val_accuracy": self.val_accuracy, "epochs": self.epochs,
                "train_seconds": self.train_seconds, "path": str(self.path), "cached": self.cached,
                "rows": len(self.logits)}


def teacher_key(parts: dict[str, Any]) -> str:
    """A stable hash of everything the teacher's logits depend on (with the cache's format version).

    >>> teacher_key({"fingerprint": "ab", "seed": 0}) == teacher_key({"seed": 0, "fingerprint": "ab"})
    True
    """
    text = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class TrainedTeacher:
    """What a teacher-training function returns."""

    logits: np.ndarray
    val_accuracy: float
    epochs: int
    train_seconds: float
    state: dict[str, Any]


def load_or_train(root: Path, parts: dict[str, Any], config: ArchConfig, train: Callable[[], TrainedTeacher]
                  ) -> Teacher:
    """The teacher cached under ``root/<key>``, or train it with ``train()`` and cache it (written to a temporary
    folder and renamed, so a crash never leaves a half-written teacher; an unreadable entry is retrained). A lock
    file per key makes concurrent workers of one run wait for the first to train it, then load it."""
    key = teacher_key({**parts, "config": config.to_dict()})
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{key}.lock", "a+") as lock:  # workers of one run wait for the one training it
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _load_or_train(root, key, parts, config, train)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load_or_train(root: Path, key: str, parts: dict[str, Any], config: ArchConfig,
                   train: Callable[[], TrainedTeacher]) -> Teacher:
    path = root / key
    meta_f, logits_f = path / "teacher.json", path / "logits.npy"
    if meta_f.is_file() and logits_f.is_file():
        try:
            meta = json.loads(meta_f.read_text())
            logits = np.load(logits_f)
            if len(logits) == meta["rows"]:
                log.info("teacher %s reused from the cache (%s)", key, path)
                return Teacher(key, meta["config"], logits, float(meta["val_accuracy"]), int(meta["epochs"]),
                               float(meta["train_seconds"]), path, cached=True)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("teacher cache entry %s is unreadable (%s); training it again", path, exc)
    t0 = time.monotonic()
    got = train()
    log.info("teacher %s trained in %.1f s: validation accuracy %.3f after %d epochs", key,
             time.monotonic() - t0, got.val_accuracy, got.epochs)
    meta = {"key": key, "config": config.to_dict(), "val_accuracy": got.val_accuracy, "epochs": got.epochs,
            "train_seconds": got.train_seconds, "rows": len(got.logits), "parts": parts}
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        np.save(tmp / "logits.npy", got.logits.astype(np.float32))
        import torch

        torch.save(got.state, tmp / "teacher.pt")
        (tmp / "teacher.json").write_text(json.dumps(meta, indent=1, default=str))
        if path.exists():  # an unreadable entry, or another worker finished first
            shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not cache the teacher at %s (%s); it is used for this run only", path, exc)
        shutil.rmtree(tmp, ignore_errors=True)
    return Teacher(key, config.to_dict(), got.logits, got.val_accuracy, got.epochs, got.train_seconds, path,
                   cached=False)


def teacher_root(where: str, run_dir: Path) -> Path:
    """Where teachers are cached: ``user`` (chipfit's cache directory) or ``run`` (the run directory)."""
    if where == "run":
        return run_dir / "teachers"
    from chipfit.paths import cache_dir

    return cache_dir() / "teachers"


def logits_of(model: Any, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """The model's logits on ``x`` (eval mode, no gradients)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], np.float32))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

