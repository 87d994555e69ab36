"""Data sources behind one protocol: ``load(spec, input, base_dir, seed, classes) -> Dataset``.

Registered sources: ``builtin`` (scikit-learn's digits), ``arrays`` (.npz or .csv), ``image-folder`` and
``audio-folder`` (class subfolders or a CSV manifest). Every problem names the file and what is wrong.

>>> from chipfit import load_contract
>>> ds = load_dataset(load_contract("examples/digits.yaml"))
>>> ds.x_train.shape[1:], ds.num_classes, len(ds.y_test)
((8, 8, 1), 10, 360)
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.contract.schema import ArraysData, BuiltinData, Contract, FolderData, InputSpec
from chipfit.data.dataset import Dataset, check_labels, split_val
from chipfit.errors import DataError
from chipfit.logging import get_logger

log = get_logger(__name__)
Loader = Callable[[Any, InputSpec, Path, int, "int | None"], Dataset]
SOURCES: dict[str, Loader] = {}
TEST_SEED = 12345  # the test split of sources without an official one never changes with the search seed


def register_source(name: str) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        SOURCES[name] = fn
        return fn

    return deco


def load_dataset(contract: Contract) -> Dataset:
    """Load the contract's data (validation split seeded by ``search.seed``)."""
    spec = contract.task.data
    return SOURCES[spec.source](spec, contract.input_spec(), Path(contract.base_dir), contract.search.seed,
                                contract.task.classes)


def _finish(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, names: list[str],
            inp: InputSpec, seed: int, val_fraction: float, source: str, skipped: int = 0) -> Dataset:
    x_tr, y_tr, x_va, y_va = split_val(x_tr, y_tr, val_fraction, seed)
    return Dataset(x_tr.astype(np.float32), y_tr, x_va.astype(np.float32), y_va, x_te.astype(np.float32), y_te,
                   tuple(names), inp.modality, inp.sample_rate_hz, source, skipped)


@register_source("builtin")
def _builtin(spec: BuiltinData, inp: InputSpec, base: Path, seed: int, classes: int | None) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]  # [N, 8, 8, 1] in [0, 1]
    y = d.target.astype(np.int64)
    x_tr, y_tr, x_te, y_te = split_val(x, y, 0.2, TEST_SEED)
    return _finish(x_tr, y_tr, x_te, y_te, [str(i) for i in range(10)], inp, seed, spec.val_fraction,
                   "builtin:digits (scikit-learn)")


def _shape_to(x: np.ndarray, inp: InputSpec, where: str) -> np.ndarray:
    """Bring arrays to the canonical layout of the input modality, naming mismatches."""
    if inp.modality == "image":
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise DataError(f"{where}: image arrays must be [N, H, W] or [N, H, W, C]; given shape {x.shape}.")
        if inp.shape and list(x.shape[1:]) != list(([*list(inp.shape), 1])[:3]):
            raise DataError(f"{where}: samples have shape {list(x.shape[1:])} but task.input.shape is {inp.shape}.")
        if x.dtype == np.uint8 or x.max(initial=0) > 1.5:
            x = x.astype(np.float32) / 255.0
        return x.astype(np.float32)
    if inp.modality == "series":
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3:
            raise DataError(f"{where}: series arrays must be [N, T] or [N, T, C]; given shape {x.shape}.")
        if inp.shape and list(x.shape[1:]) != list(([*list(inp.shape), 1])[:2]):
            raise DataError(f"{where}: windows have shape {list(x.shape[1:])} but task.input.shape is {inp.shape}.")
        return x.astype(np.float32)
    if x.ndim != 2:
        raise DataError(f"{where}: audio arrays must be [N, samples]; given shape {x.shape}.")
    return x.astype(np.float32)


@register_source("arrays")
def _arrays(spec: ArraysData, inp: InputSpec, base: Path, seed: int, classes: int | None) -> Dataset:
    path = Path(spec.path) if Path(spec.path).is_absolute() else base / spec.path
    if path.suffix.lower() == ".csv":
        return _csv(spec, path, inp, seed, classes)
    try:
        with np.load(path, allow_pickle=False) as d:
            files = set(d.files)
            arrays = {k: d[k] for k in files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}).") from exc
    names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else None
    n_cls = classes or (len(names) if names else None)
    if {"x_train", "y_train", "x_test", "y_test"} <= files:
        parts = {k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    elif {"x", "y"} <= files:
        y_all = check_labels(arrays["y"], n_cls, f"{path}[y]")
        xa, ya, xb, yb = split_val(arrays["x"], y_all, spec.test_fraction, TEST_SEED)
        parts = {"x_train": xa, "y_train": ya, "x_test": xb, "y_test": yb}
    else:
        raise DataError(f"{path}: expected arrays x_train, y_train, x_test, y_test (or x, y); "
                        f"given {', '.join(sorted(files)) or 'none'}.")
    for split in ("train", "test"):
        if len(parts[f"x_{split}"]) != len(parts[f"y_{split}"]):
            raise DataError(f"{path}: x_{split} has {len(parts[f'x_{split}'])} samples but y_{split} has "
                            f"{len(parts[f'y_{split}'])} labels.")
    y_tr = check_labels(parts["y_train"], n_cls, f"{path}[y_train]")
    y_te = check_labels(parts["y_test"], n_cls, f"{path}[y_test]")
    n = n_cls or int(max(y_tr.max(initial=0), y_te.max(initial=0)) + 1)
    x_tr = _shape_to(parts["x_train"], inp, f"{path}[x_train]")
    x_te = _shape_to(parts["x_test"], inp, f"{path}[x_test]")
    if not np.isfinite(x_tr).all() or not np.isfinite(x_te).all():
        raise DataError(f"{path}: x contains NaN or infinite values.")
    sr = float(arrays["sample_rate_hz"]) if "sample_rate_hz" in arrays else inp.sample_rate_hz
    ds = _finish(x_tr, y_tr, x_te, y_te, names or [str(i) for i in range(n)], inp, seed, spec.val_fraction,
                 f"arrays:{path.name}")
    return Dataset(**{**ds.__dict__, "sample_rate_hz": sr})


def _csv(spec: ArraysData, path: Path, inp: InputSpec, seed: int, classes: int | None) -> Dataset:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc}).") from exc
    if not rows or spec.label_column not in rows[0]:
        raise DataError(f"{path}: expected a header with a '{spec.label_column}' column (set task.data.label_column).")
    feats = [c for c in rows[0] if c != spec.label_column]
    try:
        x = np.array([[float(r[c]) for c in feats] for r in rows], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: every feature must be a number ({exc}).") from exc
    labels = [r[spec.label_column] for r in rows]
    names = sorted(set(labels), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    y = np.array([names.index(v) for v in labels], dtype=np.int64)
    shape = list(inp.shape or [len(feats)])
    if int(np.prod(shape)) != len(feats):
        raise DataError(f"{path}: {len(feats)} feature columns do not fill task.input.shape {shape}.")
    x = x.reshape(len(x), *shape)
    check_labels(y, classes, f"{path}[{spec.label_column}]")
    xa, ya, xb, yb = split_val(x, y, spec.test_fraction, TEST_SEED)
    return _finish(_shape_to(xa, inp, str(path)), ya, _shape_to(xb, inp, str(path)), yb, names, inp, seed,
                   spec.val_fraction, f"arrays:{path.name}")


def _folder_items(spec: FolderData, root: Path, exts: tuple[str, ...]) -> list[tuple[Path, str, str | None]]:
    """(file, label, split) triples from a manifest or from class subfolders."""
    if spec.manifest:
        man = root / spec.manifest
        try:
            with man.open(newline="") as f:
                rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{man}: not a readable CSV manifest ({exc}).") from exc
        for col in (spec.path_column, spec.label_column):
            if rows and col not in rows[0]:
                raise DataError(f"{man}: no '{col}' column; columns are {', '.join(rows[0])} "
                                "(set task.data.path_column / label_column).")
        return [(root / r[spec.path_column], r[spec.label_column], r.get(spec.split_column) or None) for r in rows]
    items = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        items += [(f, d.name, None) for f in sorted(d.rglob("*")) if f.suffix.lower() in exts]
    if not items:
        raise DataError(f"{root}: no class subfolders with {'/'.join(exts)} files and no manifest.")
    return items


def _read_folder(spec: FolderData, inp: InputSpec, base: Path, seed: int, classes: int | None,
                 reader: Callable[[Path], np.ndarray], exts: tuple[str, ...]) -> Dataset:
    root = Path(spec.path) if Path(spec.path).is_absolute() else base / spec.path
    items = _folder_items(spec, root, exts)
    labels = sorted({lab for _, lab, _ in items}, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    if classes is not None and len(labels) != classes:
        raise DataError(f"{root}: found {len(labels)} labels ({', '.join(labels[:12])}) but task.classes is {classes}.")
    xs: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[int]] = {"train": [], "test": []}
    skipped = 0
    for f, lab, split in items:
        try:
            arr = reader(f)
        except DataError:
            raise
        except Exception as exc:
            if not spec.skip_corrupt:
                raise DataError(f"{f}: cannot be read ({type(exc).__name__}: {exc}); fix or remove it, or set "
                                "task.data.skip_corrupt: true to skip and count such files.") from exc
            skipped += 1
            log.warning("skipping unreadable file %s: %s", f, exc)
            continue
        part = "test" if (split or "").lower() in ("test", "testing") else "train"
        xs[part].append(arr)
        ys[part].append(labels.index(lab))
    if skipped:
        log.warning("%d unreadable files skipped under %s", skipped, root)
    x_tr = np.stack(xs["train"]) if xs["train"] else np.zeros((0,))
    y_tr = np.array(ys["train"], dtype=np.int64)
    if xs["test"]:
        x_te, y_te = np.stack(xs["test"]), np.array(ys["test"], dtype=np.int64)
    else:
        x_tr, y_tr, x_te, y_te = split_val(x_tr, y_tr, spec.test_fraction, TEST_SEED)
    return _finish(x_tr, y_tr, x_te, y_te, labels, inp, seed, spec.val_fraction, f"{spec.source}:{root.name}",
                   skipped)


@register_source("audio-folder")
def _audio_folder(spec: FolderData, inp: InputSpec, base: Path, seed: int, classes: int | None) -> Dataset:
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    sr = int(inp.sample_rate_hz or 16000)
    n = round(sr * (inp.duration_s or 1.0))

    def read(f: Path) -> np.ndarray:
        rate, raw = wavfile.read(f)
        scale = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2.0**31, np.dtype(np.uint8): 128.0}
        data = raw.astype(np.float32)
        if raw.dtype == np.uint8:
            data -= 128.0
        data /= scale.get(raw.dtype, 1.0)
        if data.ndim > 1:
            data = data.mean(axis=1)
        if rate != sr:
            g = np.gcd(rate, sr)
            data = resample_poly(data, sr // g, rate // g).astype(np.float32)
        out = np.zeros(n, np.float32)  # pad / crop to the input duration, centred
        if len(data) >= n:
            start = (len(data) - n) // 2
            out[:] = data[start:start + n]
        else:
            start = (n - len(data)) // 2
            out[start:start + len(data)] = data
        return out

    return _read_folder(spec, inp, base, seed, classes, read, (".wav",))


@register_source("image-folder")
def _image_folder(spec: FolderData, inp: InputSpec, base: Path, seed: int, classes: int | None) -> Dataset:
    from PIL import Image

    h, w, c = ([*list(inp.shape or [32, 32, 3]), 3])[:3]

    def read(f: Path) -> np.ndarray:
        with Image.open(f) as im:
            im = im.convert("L" if c == 1 else "RGB").resize((w, h))
            arr = np.asarray(im, dtype=np.float32) / 255.0
        return arr[..., None] if c == 1 else arr

    return _read_folder(spec, inp, base, seed, classes, read, (".png", ".jpg", ".jpeg", ".bmp"))
