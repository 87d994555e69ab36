"""Data validation at the edge, done once when data is read: labels, class sets, CSV tables and split sizes.

Every message names the file (or array) and counts what is wrong, so a user can find it. Labels found in the
data (``3, 7, 42`` or ``"no", "yes"``) map to class indices ``0..K-1`` in sorted order; when an ``.npz`` gives
``class_names``, its labels are indices into it.

>>> import numpy as np
>>> ys, names, mapping = map_labels({"y": np.array([42, 3, 7, 3])}, where="d.npz")
>>> ys["y"].tolist(), names, mapping
([2, 0, 1, 0], ('3', '7', '42'), {'3': 0, '7': 1, '42': 2})
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chipfit.errors import ContractError, DataError, Problem
from chipfit.logging import get_logger

log = get_logger(__name__)
MIN_TRAIN_PER_CLASS = 2  # a class needs one sample left in training and one for the stratified validation split
MIN_PER_CLASS = 3  # ... and one more for a stratified test split when chipfit carves it


def _listing(items: Sequence[object], limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def label_sort_key(s: str) -> tuple[bool, int, str]:
    """Numeric labels first, in numeric order; then the others in text order.

    >>> sorted(["10", "b", "9", "a"], key=label_sort_key)
    ['9', '10', 'a', 'b']
    """
    return (not s.isdigit(), int(s) if s.isdigit() else 0, s)


def _values(y: np.ndarray, where: str) -> np.ndarray:
    """One label array as 1-D int64 or str values; errors count the bad values."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be a 1-D array with one class label per sample; given shape "
                        f"{tuple(y.shape)} (one-hot labels? give y.argmax(axis=1)).")
    kind = y.dtype.kind
    if kind in "US":
        text = np.char.strip(y.astype(str))
        empty = np.flatnonzero(text == "")
        if len(empty):
            raise DataError(f"{where}: {len(empty)} of {len(y)} labels are empty strings (at indices "
                            f"{_listing(empty.tolist())}); give every sample a label.")
        return text
    if kind == "b":
        return y.astype(np.int64)
    if kind in "iu":
        return y.astype(np.int64)
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (np.mod(y, 1) != 0))
        if len(bad):
            raise DataError(f"{where}: labels must be integers or strings; {len(bad)} of {len(y)} are not whole "
                            f"numbers (e.g. {_listing([y[i].item() for i in bad[:3]])} at indices "
                            f"{_listing(bad.tolist())}).")
        return y.astype(np.int64)
    raise DataError(f"{where}: labels must be integers or strings; given dtype {y.dtype}.")


def map_labels(labels: Mapping[str, np.ndarray], *, class_names: Sequence[str] | None = None,
               where: str) -> tuple[dict[str, np.ndarray], tuple[str, ...], dict[str, int]]:
    """Map every label array to class indices with one shared label set.

    Without ``class_names`` the labels found in all arrays together, sorted (numbers numerically), become
    classes ``0..K-1`` named by their string form. With ``class_names`` the labels must be integer indices
    into it. Returns ``(mapped arrays, class names, label -> index)``.

    >>> ys, names, _ = map_labels({"y_train": np.array(["yes", "no"]), "y_test": np.array(["no"])}, where="d")
    >>> ys["y_train"].tolist(), names
    ([1, 0], ('no', 'yes'))
    >>> map_labels({"y": np.array([0, 5])}, class_names=["a", "b"], where="d.npz")
    ... # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    chipfit.errors.DataError: d.npz[y]: 1 of 2 labels are outside 0..1 ...
    """
    values = {k: _values(np.asarray(v), f"{where}[{k}]") for k, v in labels.items()}
    kinds = {k: ("text" if v.dtype.kind == "U" else "numbers") for k, v in values.items()}
    if len(set(kinds.values())) > 1:
        raise DataError(f"{where}: label arrays mix numbers and strings "
                        f"({', '.join(f'{k} holds {v}' for k, v in kinds.items())}); use one kind.")
    if class_names is not None:
        names = tuple(str(c) for c in class_names)
        for k, v in values.items():
            if v.dtype.kind == "U":
                raise DataError(f"{where}[{k}]: with class_names the labels must be indices into it (0.."
                                f"{len(names) - 1}); given strings such as {_listing(v[:3].tolist())}.")
            bad = np.flatnonzero((v < 0) | (v >= len(names)))
            if len(bad):
                raise DataError(f"{where}[{k}]: {len(bad)} of {len(v)} labels are outside 0..{len(names) - 1}, "
                                f"the indices of the {len(names)} class_names (e.g. "
                                f"{_listing(sorted({int(v[i]) for i in bad[:20]}))}); check the label mapping.")
        return values, names, {n: i for i, n in enumerate(names)}
    found = np.unique(np.concatenate([v for v in values.values()])) if values else np.array([])
    if found.dtype.kind == "U":
        names = tuple(sorted((str(s) for s in found), key=label_sort_key))
        order = np.array(names)
    else:
        names = tuple(str(int(s)) for s in found)  # np.unique sorted them numerically
        order = found
    index = {n: i for i, n in enumerate(names)}
    mapped = {}
    for k, v in values.items():
        if v.dtype.kind == "U":
            lookup = np.argsort(order)
            pos = lookup[np.searchsorted(order, v, sorter=lookup)]
        else:
            pos = np.searchsorted(order, v)
        mapped[k] = pos.astype(np.int64)
    return mapped, names, index


def check_classes(names: Sequence[str], classes: int | None, where: str) -> None:
    """The data must hold at least two classes, and as many as ``task.classes`` says when it is given.

    A disagreement is a contract error (exit 2) that names both counts.

    >>> check_classes(("a", "b", "c"), 5, "d.npz")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    chipfit.errors.ContractError: 1 problem in the contract:
      task.classes: expected 3, the number of classes in the data (d.npz: a, b, c); given 5. ...
    """
    if len(names) < 2:
        raise DataError(f"{where}: found {len(names)} class{'es' if len(names) != 1 else ''} "
                        f"({_listing(list(names))}); classification needs at least 2.")
    if classes is not None and classes != len(names):
        raise ContractError([Problem(
            "task.classes", f"{len(names)}, the number of classes in the data ({where}: {_listing(list(names), 12)})",
            str(classes), None, None,
            "Remove task.classes (chipfit takes the classes from the data), or fix the data.")])


@dataclass(frozen=True)
class Table:
    """A CSV file read and checked: header, rows (every one as long as the header) and their line numbers."""

    path: Path
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]

    def column(self, name: str) -> list[str]:
        i = self.header.index(name)
        return [r[i] for r in self.rows]


def read_table(path: Path, *, required: Sequence[str], nonempty: Sequence[str] = (),
               what: str = "CSV file", setting: str = "task.data.label_column") -> Table:
    """Read a CSV file with a header; refuse ragged rows, missing columns and empty cells in ``nonempty``.

    >>> import tempfile, os
    >>> p = Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = p.write_text("a,label\\n1,x\\n2\\n3,\\n")
    >>> read_table(p, required=["label"])  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    chipfit.errors.DataError: .../t.csv: 1 of 3 rows do not have the header's 2 fields (line 3 has 1) ...
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows, lines = [], []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue  # blank line
                rows.append(tuple(c.strip() for c in row))
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc}).") from exc
    if not header:
        raise DataError(f"{path}: the {what} is empty; expected a header row with the columns "
                        f"{', '.join(required)}.")
    head = tuple(c.strip() for c in header)
    missing = [c for c in required if c not in head]
    if missing:
        raise DataError(f"{path}: no '{missing[0]}' column; the header has {len(head)} columns "
                        f"({_listing(list(head), 12)}) (set {setting}).")
    ragged = [(ln, len(r)) for ln, r in zip(lines, rows, strict=True) if len(r) != len(head)]
    if ragged:
        raise DataError(f"{path}: {len(ragged)} of {len(rows)} rows do not have the header's {len(head)} fields ("
                        + _listing([f"line {ln} has {n}" for ln, n in ragged]) + "); fix or remove them.")
    for col in nonempty:
        i = head.index(col)
        empty = [ln for ln, r in zip(lines, rows, strict=True) if not r[i]]
        if empty:
            raise DataError(f"{path}: {len(empty)} of {len(rows)} rows have an empty '{col}' cell (lines "
                            f"{_listing(empty)}); fill them in or remove those rows.")
    if not rows:
        raise DataError(f"{path}: the {what} has a header but no rows (0 samples).")
    return Table(path, head, tuple(rows), tuple(lines))


def check_per_class(y: np.ndarray, names: Sequence[str], need: int, where: str, why: str) -> None:
    """Every class present in ``y`` needs at least ``need`` samples (stratified splits); names the short ones."""
    counts = np.bincount(y, minlength=len(names))
    short = [i for i in np.unique(y) if counts[i] < need]
    if short:
        raise DataError(f"{where}: {len(short)} of {len(np.unique(y))} classes have fewer than {need} samples ("
                        + _listing([f"'{names[i]}' has {counts[i]}" for i in short])
                        + f"); {why}. Add samples, or remove those classes.")


def held_out_size(n: int, fraction: float) -> int:
    """How many of ``n`` samples a split of ``fraction`` takes (scikit-learn rounds up).

    >>> held_out_size(10, 0.15)
    2
    """
    return math.ceil(fraction * n)


def coverage_notes(y_train: np.ndarray, y_test: np.ndarray, names: Sequence[str], where: str) -> list[str]:
    """Warnings (logged and returned) for classes that are missing from training or from the test split."""
    notes = []
    tr, te = set(np.unique(y_train).tolist()), set(np.unique(y_test).tolist())
    no_train = [names[i] for i in sorted(te - tr)]
    if no_train:
        notes.append(f"{where}: {len(no_train)} class(es) appear in the test split but not in training ("
                     f"{_listing(no_train)}); the model cannot learn them and their test samples count as errors.")
    no_test = [names[i] for i in sorted(tr - te)]
    if no_test:
        notes.append(f"{where}: {len(no_test)} of {len(names)} classes have no test samples ({_listing(no_test)}); "
                     "test accuracy does not cover them.")
    unused = [n for i, n in enumerate(names) if i not in tr | te]
    if unused:
        notes.append(f"{where}: {len(unused)} of {len(names)} class_names have no samples at all "
                     f"({_listing(unused)}).")
    for n in notes:
        log.warning("%s", n)
    return notes
