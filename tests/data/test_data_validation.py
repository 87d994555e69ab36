"""Data validated at the edge (issue 12, and issue 11's one source of truth for classes).

Every case the issues list, each named by the file and a count: lengths, label sets, empty splits, classes too
small to stratify, ragged CSV rows and empty label cells, classes missing from a split, truncated audio, skipped
files; then fuzzed .npz, CSV and WAV files that must give a Dataset or a chipfit error, never anything else.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.io import wavfile

from chipfit import load_contract
from chipfit.data.dataset import Dataset
from chipfit.data.sources import load_dataset, peek_classes
from chipfit.errors import ContractError, DataError

SERIES = {"modality": "series", "shape": [8, 1]}
AUDIO = {"modality": "audio", "sample_rate_hz": 8000, "duration_s": 0.1}
FUZZ = settings(max_examples=int(os.environ.get("CHIPFIT_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def contract(base: Path, data: dict[str, Any], inp: dict[str, Any] | None = SERIES, classes: int | None = None):
    doc: dict[str, Any] = {"name": "d", "task": {"data": data}, "target": "stm32h743"}
    if inp is not None:
        doc["task"]["input"] = inp
    if classes is not None:
        doc["task"]["classes"] = classes
    return load_contract(doc, base_dir=base)


def npz_contract(base: Path, classes: int | None = None, **arrays: Any):
    np.savez(base / "d.npz", **arrays)
    return contract(base, {"source": "arrays", "path": "d.npz"}, classes=classes)


def xy(n: int, labels: list[Any]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(n, 8)).astype(np.float32), "y": np.array([labels[i % len(labels)] for i in range(n)])}


# --- issue 11: the classes come from the data -------------------------------------------------------------------


def test_three_class_npz_gives_three_classes(tmp_path: Path) -> None:
    c = npz_contract(tmp_path, **xy(60, [0, 1, 2]))
    assert peek_classes(c) == ("0", "1", "2")
    ds = load_dataset(c)
    assert ds.class_names == ("0", "1", "2") and ds.num_classes == 3


def test_classes_disagreeing_with_data_is_a_contract_error(tmp_path: Path) -> None:
    c = npz_contract(tmp_path, classes=5, **xy(60, [0, 1, 2]))
    for fn in (peek_classes, load_dataset):
        with pytest.raises(ContractError) as info:
            fn(c)
        (p,) = info.value.problems
        assert p.path == "task.classes" and p.given == "5" and p.expected.startswith("3, the number of classes")
        assert "d.npz" in p.expected


def test_agreeing_classes_pass(tmp_path: Path) -> None:
    assert len(peek_classes(npz_contract(tmp_path, classes=3, **xy(60, [0, 1, 2])))) == 3


def test_labels_3_7_42_are_three_classes_with_a_stated_mapping(tmp_path: Path) -> None:
    c = npz_contract(tmp_path, **xy(60, [42, 3, 7]))
    assert peek_classes(c) == ("3", "7", "42")
    ds = load_dataset(c)
    assert ds.num_classes == 3 and set(np.unique(ds.y_train)) == {0, 1, 2}
    assert ds.summary()["label_map"] == {"3": 0, "7": 1, "42": 2}


def test_string_labels_and_class_names(tmp_path: Path) -> None:
    ds = load_dataset(npz_contract(tmp_path, **xy(60, ["dog", "cat"])))
    assert ds.class_names == ("cat", "dog")
    ds = load_dataset(npz_contract(tmp_path, class_names=np.array(["zero", "one", "two"]), **xy(60, [0, 1, 2])))
    assert ds.class_names == ("zero", "one", "two") and ds.label_map == {"zero": 0, "one": 1, "two": 2}


def test_peek_classes_of_every_source(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b,label\n" + "".join(f"{i},{i},{'yes' if i % 2 else 'no'}\n"
                                                            for i in range(20)))
    assert peek_classes(contract(tmp_path, {"source": "arrays", "path": "d.csv"}, {"modality": "series",
                                                                                    "shape": [2, 1]})) == ("no", "yes")
    for cls in ("b", "a", "c"):  # peek reads folder names only: unreadable files do not matter
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        (tmp_path / "imgs" / cls / "0.png").write_bytes(b"not an image")
    img = {"modality": "image", "shape": [8, 8, 1]}
    assert peek_classes(contract(tmp_path, {"source": "image-folder", "path": "imgs"}, img)) == ("a", "b", "c")
    (tmp_path / "imgs" / "m.csv").write_text("path,label\na/0.png,up\nb/0.png,down\n")
    spec = {"source": "image-folder", "path": "imgs", "manifest": "m.csv"}
    assert peek_classes(contract(tmp_path, spec, img)) == ("down", "up")
    assert peek_classes(contract(tmp_path, {"source": "builtin"}, None)) == tuple(str(i) for i in range(10))
    with pytest.raises(ContractError, match="expected 10"):
        peek_classes(contract(tmp_path, {"source": "builtin"}, None, classes=4))


# --- issue 12: lengths, empty data, splits ------------------------------------------------------------------------


@pytest.mark.parametrize(("n_y", "given"), [(50, "y has 50 labels"), (70, "y has 70 labels")], ids=["y-shorter",
                                                                                                    "y-longer"])
def test_x_y_length_mismatch(tmp_path: Path, n_y: int, given: str) -> None:
    arrays = xy(60, [0, 1])
    arrays["y"] = np.arange(n_y) % 2
    with pytest.raises(DataError, match=f"x has 60 samples but {given}") as info:
        load_dataset(npz_contract(tmp_path, **arrays))
    assert "d.npz" in str(info.value)


def test_empty_arrays(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"d\.npz.*(0 samples|found 0 classes)"):
        load_dataset(npz_contract(tmp_path, x=np.zeros((0, 8), np.float32), y=np.zeros(0, np.int64)))


def test_one_sample_per_class(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"d\.npz: 2 of 2 classes have fewer than 3 samples \('0' has 1, '1' has 1\)"):
        load_dataset(npz_contract(tmp_path, **xy(2, [0, 1])))


def test_one_class_too_small(tmp_path: Path) -> None:
    arrays = xy(40, [0, 1])
    arrays["y"][0] = 2
    with pytest.raises(DataError, match=r"1 of 3 classes have fewer than 3 samples \('2' has 1\)"):
        load_dataset(npz_contract(tmp_path, **arrays))


def test_empty_test_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"d\.npz: the test split is empty \(0 samples\)"):
        load_dataset(npz_contract(tmp_path, x_train=np.zeros((20, 8)), y_train=np.arange(20) % 2,
                                  x_test=np.zeros((0, 8)), y_test=np.zeros(0, int)))


def test_test_class_absent_from_training_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="chipfit"):
        ds = load_dataset(npz_contract(tmp_path, x_train=np.zeros((20, 8)), y_train=np.arange(20) % 2,
                                       x_test=np.zeros((6, 8)), y_test=np.arange(6) % 3))
    assert ds.num_classes == 3
    (note,) = ds.notes
    assert "d.npz" in note and "1 class(es) appear in the test split but not in training (2)" in note
    assert note in caplog.text and ds.summary()["notes"] == [note]


# --- CSV ------------------------------------------------------------------------------------------------------


def csv_contract(base: Path, text: str):
    (base / "d.csv").write_text(text)
    return contract(base, {"source": "arrays", "path": "d.csv"}, {"modality": "series", "shape": [2, 1]})


GOOD_ROWS = "".join(f"{i},{i * 2},{'a' if i % 2 else 'b'}\n" for i in range(20))


def test_ragged_csv_row(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"d\.csv: 2 of 23 rows do not have the header's 3 fields \(line 3 has 2, "
                                        r"line 4 has 4\)"):
        load_dataset(csv_contract(tmp_path, "f0,f1,label\n1,2,a\n1,a\n1,2,3,a\n" + GOOD_ROWS))


def test_empty_label_cells(tmp_path: Path) -> None:
    c = csv_contract(tmp_path, "f0,f1,label\n1,2,\n3,4, \n" + GOOD_ROWS)
    for fn in (load_dataset, peek_classes):
        with pytest.raises(DataError, match=r"d\.csv: 2 of 22 rows have an empty 'label' cell \(lines 2, 3\)"):
            fn(c)


def test_csv_non_numeric_and_nan_features(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"d\.csv: line 2, column 'f1': every feature must be a number; given 'x'"):
        load_dataset(csv_contract(tmp_path, "f0,f1,label\n1,x,a\n" + GOOD_ROWS))
    with pytest.raises(DataError, match=r"d\.csv: 1 of 21 samples contain NaN or infinite features \(lines 2\)"):
        load_dataset(csv_contract(tmp_path, "f0,f1,label\n1,nan,a\n" + GOOD_ROWS))


# --- folders: truncated audio, skipped files ----------------------------------------------------------------------


def wav_bytes(seed: int, n: int = 800) -> bytes:
    buf = io.BytesIO()
    wavfile.write(buf, 8000, (np.random.default_rng(seed).normal(size=n) * 3000).astype(np.int16))
    return buf.getvalue()


def audio_folder(root: Path, n: int = 6) -> None:
    for c in ("down", "up"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            (root / c / f"{i}.wav").write_bytes(wav_bytes(i))


def test_truncated_wav_is_refused_then_skipped_and_listed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    audio_folder(tmp_path / "a")
    bad = tmp_path / "a" / "up" / "short.wav"
    bad.write_bytes(wav_bytes(9, 16000)[:200])  # a valid header declaring 32,000 bytes of samples
    spec = {"source": "audio-folder", "path": "a"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw WavFileWarning reaches the user
        with pytest.raises(DataError, match=r"short\.wav: cannot be read \(truncated WAV file: Reached EOF"):
            load_dataset(contract(tmp_path, spec, AUDIO))
        with caplog.at_level(logging.WARNING, logger="chipfit"):
            ds = load_dataset(contract(tmp_path, {**spec, "skip_corrupt": True}, AUDIO))
    assert ds.skipped == 1 and ds.skipped_files[0][0] == str(bad) and "truncated" in ds.skipped_files[0][1]
    assert str(bad) in caplog.text and "1 of 13 files" in caplog.text
    assert ds.summary()["skipped_files"] == [f"{bad}: {ds.skipped_files[0][1]}"]
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 12


def test_every_file_skipped(tmp_path: Path) -> None:
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "imgs" / c / f"{i}.png").write_bytes(b"not an image")
    spec = {"source": "image-folder", "path": "imgs", "skip_corrupt": True}
    with pytest.raises(DataError, match=r"imgs: all 6 files were unreadable and skipped"):
        load_dataset(contract(tmp_path, spec, {"modality": "image", "shape": [8, 8, 1]}))


def test_class_whose_files_are_all_skipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(4):
            path = tmp_path / "imgs" / c / f"{i}.png"
            if c == "c":
                path.write_bytes(b"broken")
            else:
                Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(path)
    spec = {"source": "image-folder", "path": "imgs", "skip_corrupt": True}
    with pytest.raises(DataError, match=r"1 of 3 classes have no readable files left \(c\); 4 files were skipped"):
        load_dataset(contract(tmp_path, spec, {"modality": "image", "shape": [8, 8, 1]}))


def test_manifest_with_empty_label_and_ragged_rows(tmp_path: Path) -> None:
    audio_folder(tmp_path / "a", 2)
    (tmp_path / "a" / "m.csv").write_text("path,label\ndown/0.wav,down\ndown/1.wav,\nup/0.wav\n")
    spec = {"source": "audio-folder", "path": "a", "manifest": "m.csv"}
    with pytest.raises(DataError, match=r"m\.csv: 1 of 3 rows do not have the header's 2 fields \(line 4 has 1\)"):
        load_dataset(contract(tmp_path, spec, AUDIO))


# --- fuzzed data files -----------------------------------------------------------------------------------------


def check_dataset(ds: Dataset) -> None:
    k = ds.num_classes
    assert k >= 2 and sorted(ds.label_map.values()) == list(range(k))
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert len(x) == len(y) > 0 and y.dtype == np.int64 and y.min() >= 0 and y.max() < k
        assert np.isfinite(x).all()


def outcome(fn: Any) -> Dataset | Exception:
    """Run ``fn``: it must give a valid Dataset or a DataError/ContractError naming something, nothing else."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", wavfile.WavFileWarning)
        try:
            ds = fn()
        except (DataError, ContractError) as exc:
            assert str(exc).strip()
            return exc
    check_dataset(ds)
    return ds


LABELS = st.one_of(st.lists(st.integers(-3, 50), max_size=30), st.lists(st.sampled_from([0.0, 1.0, 2.5, np.nan]),
                                                                         max_size=30),
                   st.lists(st.sampled_from(["a", "b", "", " c", "7"]), max_size=30),
                   st.lists(st.booleans(), max_size=30))


@FUZZ
@given(n_x=st.integers(0, 30), labels=LABELS, split=st.booleans(), classes=st.sampled_from([None, 2, 3]),
       names=st.sampled_from([None, ["a", "b"], ["a", "b", "c"]]), nan=st.booleans())
def test_fuzzed_npz(n_x: int, labels: list[Any], split: bool, classes: int | None, names: list[str] | None,
                    nan: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        x = np.random.default_rng(0).normal(size=(n_x, 8)).astype(np.float32)
        if nan and n_x:
            x[0, 0] = np.nan
        y = np.array(labels)
        arrays: dict[str, Any] = ({"x_train": x, "y_train": y, "x_test": x[: n_x // 3], "y_test": y[: len(y) // 3]}
                                  if split else {"x": x, "y": y})
        if names is not None:
            arrays["class_names"] = np.array(names)
        c = npz_contract(base, classes=classes, **arrays)
        result = outcome(lambda: load_dataset(c))
        if isinstance(result, Dataset):
            assert peek_classes(c) == result.class_names
            assert n_x == len(y) and not nan


CELLS = st.sampled_from(["1", "2.5", "", "a", "nan", "-3", "b", "1e3"])


@FUZZ
@given(rows=st.lists(st.lists(CELLS, min_size=0, max_size=4), max_size=25))
def test_fuzzed_csv(rows: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        text = "f0,f1,label\n" + "".join(",".join(r) + "\n" for r in rows)
        c = csv_contract(Path(d), text)
        result = outcome(lambda: load_dataset(c))
        if isinstance(result, Dataset):
            assert all(len(r) in (0, 3) or all(not x for x in r) for r in rows)


@FUZZ
@given(cut=st.integers(0, 1700), junk=st.binary(max_size=64), skip=st.booleans())
def test_fuzzed_wav(cut: int, junk: bytes, skip: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        audio_folder(base / "a", 4)
        bad = base / "a" / "up" / "fuzz.wav"
        bad.write_bytes(wav_bytes(7)[:cut] + junk)
        result = outcome(lambda: load_dataset(contract(base, {"source": "audio-folder", "path": "a",
                                                              "skip_corrupt": skip}, AUDIO)))
        if isinstance(result, Dataset):
            assert result.skipped == len(result.skipped_files) <= 1
            assert result.skipped == 0 or result.skipped_files[0][0] == str(bad)
            assert len(result.y_train) + len(result.y_val) + len(result.y_test) == 8 + (1 - result.skipped)
        else:
            assert "fuzz.wav" in str(result)
