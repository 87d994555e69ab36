"""The Dataset record every data source returns: train / val / test arrays in one canonical layout.

Layouts (float32): image ``[N, H, W, C]`` in [0, 1]; audio ``[N, samples]`` in [-1, 1]; series ``[N, T, C]``.
Labels are int64 class indices into ``class_names``. The validation split is carved from train (seeded,
stratified); the test split is only used for final figures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split

from chipfit.errors import DataError


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    modality: str
    sample_rate_hz: float | None = None
    source: str = ""
    skipped: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def fingerprint(self) -> str:
        """Hash of the arrays and labels (provenance)."""
        h = hashlib.sha1()
        for a in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, object]:
        return {"source": self.source, "modality": self.modality, "classes": list(self.class_names),
                "train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test),
                "sample_shape": list(self.x_train.shape[1:]), "skipped": self.skipped,
                "fingerprint": self.fingerprint}


def split_val(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded stratified split of ``fraction`` of (x, y) into a held-out part (falls back to unstratified
    when a class is too small to stratify)."""
    idx = np.arange(len(y))
    try:
        a, b = train_test_split(idx, test_size=fraction, random_state=seed, stratify=y)
    except ValueError:
        a, b = train_test_split(idx, test_size=fraction, random_state=seed)
    return x[a], y[a], x[b], y[b]


def check_labels(y: np.ndarray, num_classes: int | None, where: str) -> np.ndarray:
    """Labels must be non-negative integers below the class count; errors name the file and what is wrong."""
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be a 1-D array of class indices; given shape {y.shape}.")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{where}: labels must be integers; given dtype {y.dtype}.")
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: labels must be >= 0; found {int(y.min())}.")
    if num_classes is not None and len(y) and y.max() >= num_classes:
        raise DataError(f"{where}: label {int(y.max())} is out of range for {num_classes} classes "
                        "(task.classes or class_names); check the label mapping.")
    return y.astype(np.int64)
