"""Data sources behind one protocol: ``load(spec, input, base_dir, seed, classes) -> Dataset``.

Registered sources: ``builtin`` (scikit-learn's digits), ``arrays`` (.npz or .csv), ``image-folder`` and
``audio-folder`` (class subfolders or a CSV manifest). Every problem names the file and what is wrong.

Each source brings its samples into the canonical range of :mod:`chipfit.data.dataset` and states, in
``Dataset.raw``, what a raw sample was and the scaling it applied (it ships in the recipe, so the device-side
Predictor takes raw sensor values):

=================  ==========================================  =================  ================
source             raw sample                                  range              scale
=================  ==========================================  =================  ================
builtin digits     ``load_digits().images[i][..., None]``       0-16 (nominal)     1/16
image-folder       uint8 pixels as Pillow decodes the file      0-255 (nominal)    1/255
image arrays       uint8, or floats above 1.5                   0-255 (nominal)    1/255
image arrays       floats within [0, 1]                         0-1 (nominal)      1
audio-folder       the WAV's PCM (int16, int32, uint8, float)   its full scale     1/32768, ...
audio, series      arrays as given                              min-max (observed) 1
=================  ==========================================  =================  ================

>>> from chipfit import load_contract
>>> ds = load_dataset(load_contract("examples/digits.yaml"))
>>> ds.x_train.shape[1:], ds.num_classes, len(ds.y_test)
((8, 8, 1), 10, 360)
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.contract.paths import absolute
from chipfit.contract.schema import ArraysData, BuiltinData, Contract, FolderData, InputSpec
from chipfit.data.dataset import Dataset, split_val
from chipfit.data.validate import (
    MIN_PER_CLASS,
    check_classes,
    coverage_notes,
    label_sort_key,
    map_labels,
    read_table,
)
from chipfit.errors import DataError
from chipfit.logging import get_logger
from chipfit.runtime.preprocess import RawInput

log = get_logger(__name__)
Loader = Callable[[Any, InputSpec, Path, int, "int | None"], Dataset]
SOURCES: dict[str, Loader] = {}
TEST_SEED = 12345  # the test split of sources without an official one never changes with the search seed
_EXTS = {"audio-folder": (".wav",), "image-folder": (".png", ".jpg", ".jpeg", ".bmp")}


def register_source(name: str) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        SOURCES[name] = fn
        return fn

    return deco


def load_dataset(contract: Contract) -> Dataset:
    """Load the contract's data (validation split seeded by ``search.seed``), validated once, here.

    Class names come from the data; a ``task.classes`` that disagrees is a ContractError naming both counts,
    raised before any file is decoded.
    """
    spec = contract.task.data
    return SOURCES[spec.source](spec, contract.input_spec(), Path(contract.base_dir), contract.search.seed,
                                contract.task.classes)


def peek_classes(contract: Contract) -> tuple[str, ...]:
    """The class names of the contract's data, read cheaply: labels only, no sample is decoded.

    Reads the label arrays (and ``class_names``) of an ``.npz``, the label column of a CSV or manifest, the class
    subfolder names of a folder, or the built-in digits' ten classes. Like :func:`load_dataset`, raises a
    ContractError naming both counts when ``task.classes`` disagrees with the data.

    >>> from chipfit import load_contract
    >>> peek_classes(load_contract("examples/digits.yaml"))
    ('0', '1', '2', '3', '4', '5', '6', '7', '8', '9')
    """
    spec = contract.task.data
    base = Path(contract.base_dir)
    if isinstance(spec, BuiltinData):
        names, where = DIGITS, "builtin:digits"
    elif isinstance(spec, ArraysData):
        path = _abs(spec.path, base)
        if path.suffix.lower() == ".csv":
            table = read_table(path, required=[spec.label_column], nonempty=[spec.label_column])
            names = tuple(sorted(set(table.column(spec.label_column)), key=label_sort_key))
        else:
            arrays = _read_npz(path, labels_only=True)
            names = map_labels(_label_arrays(arrays, path), class_names=_class_names(arrays), where=str(path))[1]
        where = str(path)
    else:
        root = _abs(spec.path, base)
        exts = _EXTS[spec.source]
        items = _folder_items(spec, root, exts)
        names, where = tuple(sorted({lab for _, lab, _ in items}, key=label_sort_key)), str(root)
    check_classes(names, contract.task.classes, where)
    return names


def _abs(path: str, base: Path) -> Path:
    return absolute(path, base)  # the contract's path rule (a loaded contract's paths are absolute already)


def _finish(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, names: Sequence[str],
            inp: InputSpec, seed: int, val_fraction: float, source: str, *, where: str,
            label_map: dict[str, int] | None = None, skipped: Sequence[tuple[str, str]] = (),
            sample_rate_hz: float | None = None, raw: RawInput | None = None) -> Dataset:
    """Carve the validation split from train, check that no split is empty, note classes a split misses."""
    if len(y_te) == 0:
        raise DataError(f"{where}: the test split is empty (0 samples); give test samples, or let chipfit carve "
                        "task.data.test_fraction from all the data.")
    if len(x_te) != len(y_te):
        raise DataError(f"{where}: x_test has {len(x_te)} samples but y_test has {len(y_te)} labels.")
    x_tr, y_tr, x_va, y_va = split_val(x_tr, y_tr, val_fraction, seed, names=names, where=f"{where} (training)")
    notes = coverage_notes(np.concatenate([y_tr, y_va]), y_te, names, where)
    return Dataset(x_tr.astype(np.float32), y_tr, x_va.astype(np.float32), y_va, x_te.astype(np.float32), y_te,
                   tuple(names), inp.modality, sample_rate_hz or inp.sample_rate_hz, source, len(skipped),
                   tuple(notes), dict(label_map or {n: i for i, n in enumerate(names)}), tuple(skipped), raw)


DIGITS = tuple(str(i) for i in range(10))


@register_source("builtin")
def _builtin(spec: BuiltinData, inp: InputSpec, base: Path, seed: int, classes: int | None) -> Dataset:
    from sklearn.datasets import load_digits

    check_classes(DIGITS, classes, "builtin:digits")
    d = load_digits()
    x = (d.images / DIGITS_RAW.range[1]).astype(np.float32)[..., None]  # [N, 8, 8, 1] in [0, 1]; raw is 0-16
    y = d.target.astype(np.int64)
    x_tr, y_tr, x_te, y_te = split_val(x, y, 0.2, TEST_SEED)
    return _finish(x_tr, y_tr, x_te, y_te, DIGITS, inp, seed, spec.val_fraction, "builtin:digits (scikit-learn)",
                   where="builtin:digits", raw=DIGITS_RAW)


#: scikit-learn's digits as ``load_digits().images`` gives them: 8x8 grey levels 0-16 (float64)
DIGITS_RAW = RawInput(shape=(8, 8, 1), layout="HWC", dtype="float64", range=(0.0, 16.0), scale=1 / 16,
                      description="scikit-learn load_digits().images: 8x8 grey levels 0-16, with a channel axis",
                      example="sklearn.datasets.load_digits().images[0][..., None]")


def _image_scale(x: np.ndarray) -> float:
    """The factor that brings image arrays to [0, 1]: 1/255 for uint8 or values above 1.5, else 1."""
    return 1 / 255 if x.dtype == np.uint8 or x.max(initial=0) > 1.5 else 1.0


def _arrays_raw(x: np.ndarray, inp: InputSpec, shape: tuple[int, ...], example: str) -> RawInput:
    """What a raw sample of user arrays is: images 0-255 (scaled by 1/255) or [0, 1]; others as given."""
    layout = {"image": "HWC", "series": "TC", "audio": "T"}[inp.modality]
    if x.ndim == len(shape):  # stored without the channel axis the canonical layout has
        example += "[..., None]"
    dtype = str(x.dtype) if x.dtype.kind in "iuf" else "float32"
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if inp.modality == "image":
        if _image_scale(x) != 1.0:
            return RawInput(shape, layout, dtype, (0.0, 255.0), "nominal", 1 / 255, description="8-bit pixel values "
                            "0-255, scaled by 1/255 in training", example=example)
        if lo >= 0 and hi <= 1:
            return RawInput(shape, layout, dtype, (0.0, 1.0), "nominal", description="pixel values in [0, 1], "
                            "as given", example=example)
    return RawInput(shape, layout, dtype, (lo, hi), "observed", sample_rate_hz=inp.sample_rate_hz,
                    description=f"{inp.modality} values as given (not scaled); the range is the training data's",
                    example=example)


def _shape_to(x: np.ndarray, inp: InputSpec, where: str) -> np.ndarray:
    """Bring arrays to the canonical layout of the input modality, naming mismatches."""
    if inp.modality == "image":
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise DataError(f"{where}: image arrays must be [N, H, W] or [N, H, W, C]; given shape {x.shape}.")
        if inp.shape and list(x.shape[1:]) != list(([*list(inp.shape), 1])[:3]):
            raise DataError(f"{where}: samples have shape {list(x.shape[1:])} but task.input.shape is {inp.shape}.")
        if _image_scale(x) != 1.0:
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


_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_npz(path: Path, *, labels_only: bool = False) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (only labels and class names with ``labels_only``), names checked."""
    try:
        with np.load(path, allow_pickle=False) as d:
            files = set(d.files)
            if not ({"x", "y"} <= files or set(_SPLIT_KEYS) <= files):
                raise DataError(f"{path}: expected arrays x_train, y_train, x_test, y_test (or x, y); "
                                f"given {', '.join(sorted(files)) or 'none'}.")
            keep = {k for k in files if k.startswith("y") or k == "class_names"} if labels_only else files
            return {k: d[k] for k in keep}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}).") from exc


def _label_arrays(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    keys = ("y_train", "y_test") if {"y_train", "y_test"} <= set(arrays) else ("y",)
    return {k: arrays[k] for k in keys}


def _class_names(arrays: dict[str, np.ndarray]) -> list[str] | None:
    if "class_names" not in arrays:
        return None
    return [c.decode(errors="replace") if isinstance(c, bytes) else str(c) for c in arrays["class_names"].ravel()]


@register_source("arrays")
def _arrays(spec: ArraysData, inp: InputSpec, base: Path, seed: int, classes: int | None) -> Dataset:
    path = _abs(spec.path, base)
    if path.suffix.lower() == ".csv":
        return _csv(spec, path, inp, seed, classes)
    arrays = _read_npz(path)
    split = set(_SPLIT_KEYS) <= set(arrays)
    xs = {k: arrays[k] for k in (("x_train", "x_test") if split else ("x",))}
    for xk, yk in (("x_train", "y_train"), ("x_test", "y_test")) if split else (("x", "y"),):
        if len(xs[xk]) != len(arrays[yk]):
            raise DataError(f"{path}: {xk} has {len(xs[xk])} samples but {yk} has {len(arrays[yk])} labels; "
                            "they must match one to one.")
    ys, names, label_map = map_labels(_label_arrays(arrays, path), class_names=_class_names(arrays), where=str(path))
    check_classes(names, classes, str(path))
    if split:
        if len(ys["y_train"]) == 0:
            raise DataError(f"{path}: x_train and y_train hold 0 samples.")
        x_tr = _shape_to(xs["x_train"], inp, f"{path}[x_train]")
        x_te = _shape_to(xs["x_test"], inp, f"{path}[x_test]") if len(xs["x_test"]) else xs["x_test"]
        y_tr, y_te = ys["y_train"], ys["y_test"]
    else:
        if len(ys["y"]) == 0:
            raise DataError(f"{path}: x and y hold 0 samples.")
        x_all = _shape_to(xs["x"], inp, f"{path}[x]")
        x_tr, y_tr, x_te, y_te = split_val(x_all, ys["y"], spec.test_fraction, TEST_SEED, names=names,
                                           where=str(path), part="test", need=MIN_PER_CLASS)
    for name, x in (("x_train", x_tr), ("x_test", x_te)):
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum()) if len(x) else 0
        if bad:
            raise DataError(f"{path}: {bad} of {len(x)} samples of {name if split else 'x'} contain NaN or "
                            "infinite values.")
    sr = float(arrays["sample_rate_hz"]) if "sample_rate_hz" in arrays else None
    key = "x_train" if split else "x"
    raw = _arrays_raw(xs[key], inp, tuple(x_tr.shape[1:]), f"numpy.load({path.name!r})[{key!r}][0]")
    if sr is not None:
        raw = replace(raw, sample_rate_hz=sr)
    return _finish(x_tr, y_tr, x_te, y_te, names, inp, seed, spec.val_fraction, f"arrays:{path.name}",
                   where=str(path), label_map=label_map, sample_rate_hz=sr, raw=raw)


def _csv(spec: ArraysData, path: Path, inp: InputSpec, seed: int, classes: int | None) -> Dataset:
    col = spec.label_column
    table = read_table(path, required=[col], nonempty=[col])
    feats = [i for i, c in enumerate(table.header) if c != col]
    x = np.empty((len(table.rows), len(feats)), dtype=np.float32)
    for r, (row, line) in enumerate(zip(table.rows, table.lines, strict=True)):
        for j, i in enumerate(feats):
            try:
                x[r, j] = float(row[i])
            except ValueError:
                raise DataError(f"{path}: line {line}, column '{table.header[i]}': every feature must be a number; "
                                f"given {row[i]!r}.") from None
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1)) if x.size else np.array([], int)
    if len(bad):
        raise DataError(f"{path}: {len(bad)} of {len(x)} samples contain NaN or infinite features (lines "
                        f"{', '.join(str(table.lines[i]) for i in bad[:5])}{', ...' if len(bad) > 5 else ''}).")
    ys, names, label_map = map_labels({col: np.array(table.column(col))}, where=str(path))
    check_classes(names, classes, str(path))
    shape = list(inp.shape or [len(feats)])
    if int(np.prod(shape)) != len(feats):
        raise DataError(f"{path}: {len(feats)} feature columns do not fill task.input.shape {shape}.")
    x = x.reshape(len(x), *shape)
    xa, ya, xb, yb = split_val(x, ys[col], spec.test_fraction, TEST_SEED, names=names, where=str(path),
                               part="test", need=MIN_PER_CLASS)
    x_tr = _shape_to(xa, inp, str(path))
    raw = _arrays_raw(xa, inp, tuple(x_tr.shape[1:]), f"one row of {path.name} without '{col}', as floats")
    return _finish(x_tr, ya, _shape_to(xb, inp, str(path)), yb, names, inp, seed,
                   spec.val_fraction, f"arrays:{path.name}", where=str(path), label_map=label_map, raw=raw)


class Unreadable(Exception):
    """A sample file that decodes to nothing usable (truncated, empty); skipped and counted like a corrupt file."""


def _folder_items(spec: FolderData, root: Path, exts: tuple[str, ...]) -> list[tuple[Path, str, str | None]]:
    """(file, label, split) triples from a manifest or from class subfolders."""
    if spec.manifest:
        table = read_table(root / spec.manifest, required=[spec.path_column, spec.label_column],
                           nonempty=[spec.path_column, spec.label_column], what="CSV manifest",
                           setting="task.data.path_column / label_column")
        split = table.header.index(spec.split_column) if spec.split_column in table.header else None
        ip, il = table.header.index(spec.path_column), table.header.index(spec.label_column)
        return [(root / r[ip], r[il], (r[split] or None) if split is not None else None) for r in table.rows]
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; expected a folder of class subfolders (or set task.data.manifest).")
    items = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        items += [(f, d.name, None) for f in sorted(d.rglob("*")) if f.suffix.lower() in exts and f.is_file()]
    if not items:
        raise DataError(f"{root}: no class subfolders with {'/'.join(exts)} files (0 files found) and no manifest.")
    return items


def _read_folder(spec: FolderData, inp: InputSpec, base: Path, seed: int, classes: int | None,
                 reader: Callable[[Path], np.ndarray], exts: tuple[str, ...]) -> Dataset:
    root = _abs(spec.path, base)
    items = _folder_items(spec, root, exts)
    labels = tuple(sorted({lab for _, lab, _ in items}, key=label_sort_key))
    check_classes(labels, classes, str(root))  # before decoding any file
    index = {lab: i for i, lab in enumerate(labels)}
    xs: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[int]] = {"train": [], "test": []}
    skipped: list[tuple[str, str]] = []
    for f, lab, split in items:
        try:
            arr = reader(f)
        except DataError:
            raise
        except Exception as exc:
            why = str(exc) if isinstance(exc, Unreadable) else f"{type(exc).__name__}: {exc}"
            if not spec.skip_corrupt:
                raise DataError(f"{f}: cannot be read ({why}); fix or remove it, or set "
                                "task.data.skip_corrupt: true to skip and count such files.") from exc
            skipped.append((str(f), why))
            log.warning("skipping unreadable file %s: %s", f, why)
            continue
        part = "test" if (split or "").lower() in ("test", "testing") else "train"
        xs[part].append(arr)
        ys[part].append(index[lab])
    if skipped:
        log.warning("%d of %d files under %s were unreadable and skipped (task.data.skip_corrupt)", len(skipped),
                    len(items), root)
    if not xs["train"] and not xs["test"]:
        raise DataError(f"{root}: all {len(items)} files were unreadable and skipped ({skipped[0][0]}: "
                        f"{skipped[0][1]}{', ...' if len(skipped) > 1 else ''}); no data left.")
    found = np.bincount(np.array(ys["train"] + ys["test"], dtype=np.int64), minlength=len(labels))
    empty = [lab for lab, n in zip(labels, found, strict=True) if n == 0]
    if empty:
        raise DataError(f"{root}: {len(empty)} of {len(labels)} classes have no readable files left ("
                        f"{', '.join(empty[:5])}); {len(skipped)} files were skipped as unreadable.")
    where = str(root)
    if not xs["train"]:
        raise DataError(f"{where}: every readable file is in the test split ({len(xs['test'])} samples); "
                        "the training split is empty.")
    x_tr, y_tr = np.stack(xs["train"]), np.array(ys["train"], dtype=np.int64)
    if xs["test"]:
        x_te, y_te = np.stack(xs["test"]), np.array(ys["test"], dtype=np.int64)
    else:
        x_tr, y_tr, x_te, y_te = split_val(x_tr, y_tr, spec.test_fraction, TEST_SEED, names=labels, where=where,
                                           part="test", need=MIN_PER_CLASS)
    return _finish(x_tr, y_tr, x_te, y_te, labels, inp, seed, spec.val_fraction, f"{spec.source}:{root.name}",
                   where=where, skipped=skipped)


def _read_wav(f: Path) -> tuple[int, np.ndarray]:
    """``scipy.io.wavfile.read``, refusing truncated files (a valid header with less data than it declares)."""
    from scipy.io import wavfile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", wavfile.WavFileWarning)
        rate, raw = wavfile.read(f)
    for w in caught:
        if "EOF" in str(w.message):
            raise Unreadable(f"truncated WAV file: {w.message}")
        log.debug("%s: %s", f, w.message)
    if raw.size == 0:
        raise Unreadable("WAV file with no audio samples")
    return rate, raw


@register_source("audio-folder")
def _audio_folder(spec: FolderData, inp: InputSpec, base: Path, seed: int, classes: int | None) -> Dataset:
    from scipy.signal import resample_poly

    sr = int(inp.sample_rate_hz or 16000)
    n = round(sr * (inp.duration_s or 1.0))
    dtypes: set[np.dtype] = set()

    def read(f: Path) -> np.ndarray:
        rate, raw = _read_wav(f)
        dtypes.add(raw.dtype)
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

    ds = _read_folder(spec, inp, base, seed, classes, read, _EXTS["audio-folder"])
    return replace(ds, raw=_pcm_raw(dtypes, sr, n))


#: integer PCM formats: (range, scale, offset) such that raw * scale + offset is in [-1, 1]
_PCM = {"int16": ((-32768.0, 32767.0), 1 / 32768, 0.0), "int32": ((-2.0**31, 2.0**31 - 1), 2.0**-31, 0.0),
        "uint8": ((0.0, 255.0), 1 / 128, -1.0)}


def _pcm_raw(dtypes: set[np.dtype], sr: int, n: int) -> RawInput:
    """Raw audio as the WAV files hold it: their one integer PCM format, or float PCM in [-1, 1]."""
    kind = str(next(iter(dtypes))) if len(dtypes) == 1 else "float32"
    rng, scale, offset = _PCM.get(kind, ((-1.0, 1.0), 1.0, 0.0))
    mixed = f" (the files mix {', '.join(sorted(str(d) for d in dtypes))}: give float PCM)" if len(dtypes) > 1 else ""
    return RawInput((n,), "T", kind if kind in _PCM else "float32", rng, "nominal", scale, offset, float(sr),
                    description=f"mono {kind} PCM at {sr} Hz, {n} samples (stereo averaged, resampled and "
                    f"centre-padded or cropped to length as in training){mixed}",
                    example="scipy.io.wavfile.read(path)[1]  # mono, at the sample rate, padded or cropped")


@register_source("image-folder")
def _image_folder(spec: FolderData, inp: InputSpec, base: Path, seed: int, classes: int | None) -> Dataset:
    from PIL import Image

    h, w, c = ([*list(inp.shape or [32, 32, 3]), 3])[:3]
    mode = "L" if c == 1 else "RGB"

    def read(f: Path) -> np.ndarray:
        with Image.open(f) as im:
            im = im.convert(mode).resize((w, h))
            arr = np.asarray(im, dtype=np.float32) / 255.0
        return arr[..., None] if c == 1 else arr

    ds = _read_folder(spec, inp, base, seed, classes, read, _EXTS["image-folder"])
    raw = RawInput((h, w, 1 if c == 1 else 3), "HWC", "uint8", (0.0, 255.0), "nominal", 1 / 255,
                   description=f"8-bit {mode} pixels 0-255 as Pillow decodes the file, resized to {w}x{h}",
                   example=f"numpy.asarray(PIL.Image.open(path).convert({mode!r}).resize(({w}, {h})))"
                   + ("[..., None]" if c == 1 else ""))
    return replace(ds, raw=raw)
