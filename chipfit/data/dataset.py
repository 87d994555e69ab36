"""The Dataset record every data source returns: train / val / test arrays in one canonical layout.

Layouts (float32): image ``[N, H, W, C]`` in [0, 1]; audio ``[N, samples]`` in [-1, 1]; series ``[N, T, C]``.
``raw`` (a :class:`~chipfit.runtime.preprocess.RawInput`) says what one sample was before the source scaled it
into that range (the built-in digits: 0-16; 8-bit images: 0-255; int16 PCM), so the shipped recipe can take
raw sensor values.
Labels are int64 class indices into ``class_names``. The validation split is carved from train (seeded,
stratified, at least two samples per class); the test split is only used for final figures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split

from chipfit.data.validate import MIN_TRAIN_PER_CLASS, check_per_class, held_out_size
from chipfit.errors import DataError
from chipfit.logging import get_logger
from chipfit.runtime.preprocess import RawInput

log = get_logger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test arrays, the class names, and what was found while reading them.

    ``label_map`` maps each label as found in the data (``"42"``, ``"yes"``, a folder name) to its class index;
    ``skipped_files`` lists ``(file, reason)`` for every file skipped as unreadable (``skipped`` counts them);
    ``notes`` are warnings about the data (classes missing from a split, ...), also logged.
    """

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
    label_map: dict[str, int] = field(default_factory=dict)
    skipped_files: tuple[tuple[str, str], ...] = ()
    raw: RawInput | None = None

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
        """What the report states about the data: sizes, classes and the label mapping, skipped files, notes."""
        label_map = self.label_map or {n: i for i, n in enumerate(self.class_names)}
        return {"source": self.source, "modality": self.modality, "classes": list(self.class_names),
                "train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test),
                "sample_shape": list(self.x_train.shape[1:]), "skipped": self.skipped,
                "fingerprint": self.fingerprint, "label_map": dict(label_map),
                "skipped_files": [f"{f}: {why}" for f, why in self.skipped_files], "notes": list(self.notes)}


def split_val(x: np.ndarray, y: np.ndarray, fraction: float, seed: int, *, names: Sequence[str] | None = None,
              where: str = "data", part: str = "validation", need: int = MIN_TRAIN_PER_CLASS) -> tuple[np.ndarray, ...]:
    """Seeded split of ``fraction`` of (x, y) into a held-out part, stratified by class.

    Every class needs at least ``need`` samples (a DataError names the short classes and their counts). When
    the held-out part is too small to hold every class, the split is random (logged) and the coverage notes
    of the dataset say which classes the test split misses.

    >>> x, y = np.zeros((20, 2)), np.arange(20) % 2
    >>> [len(a) for a in split_val(x, y, 0.2, 0)]
    [16, 16, 4, 4]
    """
    if len(x) != len(y):
        raise DataError(f"{where}: x has {len(x)} samples but y has {len(y)} labels; they must match one to one.")
    if len(y) == 0:
        raise DataError(f"{where}: no samples to carve the {part} split from (0 samples).")
    names = list(names) if names is not None else [str(i) for i in range(int(y.max()) + 1)]
    check_per_class(y, names, need, where, f"the {part} split ({fraction:.0%}) is carved stratified by class "
                    f"and every class needs {need} samples for it")
    n, k = len(y), len(np.unique(y))
    held = held_out_size(n, fraction)
    if n - held < 1:
        raise DataError(f"{where}: a {part} split of {fraction:.0%} takes all {n} samples; lower the fraction "
                        "or add samples.")
    idx = np.arange(n)
    if held < k or n - held < k:
        log.warning("%s: the %s split (%d of %d samples) is smaller than the %d classes; split at random, not "
                    "stratified", where, part, held, n, k)
        a, b = train_test_split(idx, test_size=held, random_state=seed)
    else:
        a, b = train_test_split(idx, test_size=held, random_state=seed, stratify=y)
    return x[a], y[a], x[b], y[b]
