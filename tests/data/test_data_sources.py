"""Data sources: arrays (.npz, x/y, CSV), image and audio folders, manifests, and every way data goes wrong."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import wavfile

from chipfit import load_contract
from chipfit.data.sources import load_dataset
from chipfit.errors import ContractError, DataError

IMG8 = {"modality": "image", "shape": [8, 8, 1]}
IMG8X3 = {"modality": "image", "shape": [8, 8, 3]}


def contract(tmp_path, data: dict, inp: dict, classes: int | None = None):
    doc = {"name": "d", "task": {"data": data, "input": inp}, "target": "stm32h743"}
    if classes:
        doc["task"]["classes"] = classes
    return load_contract(doc, base_dir=tmp_path)


def npz(tmp_path, name="d.npz", **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def test_npz_official_split(tmp_path):
    rng = np.random.default_rng(0)
    npz(tmp_path, x_train=rng.integers(0, 255, (100, 8, 8, 3), dtype=np.uint8), y_train=np.arange(100) % 4,
        x_test=rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8), y_test=np.arange(20) % 4,
        class_names=np.array(["a", "b", "c", "d"]))
    ds = load_dataset(contract(tmp_path, {"source": "arrays", "path": "d.npz"}, IMG8X3))
    assert ds.class_names == ("a", "b", "c", "d")
    assert len(ds.y_test) == 20 and len(ds.y_train) + len(ds.y_val) == 100
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() <= 1.0
    # the validation split is seeded: the same seed gives the same split
    again = load_dataset(contract(tmp_path, {"source": "arrays", "path": "d.npz"}, IMG8X3))
    assert np.array_equal(ds.y_val, again.y_val) and ds.fingerprint == again.fingerprint


def test_xy_with_split_fraction_and_series(tmp_path):
    npz(tmp_path, x=np.random.default_rng(0).normal(size=(200, 64)).astype("float32"), y=np.arange(200) % 2)
    ds = load_dataset(contract(tmp_path, {"source": "arrays", "path": "d.npz", "test_fraction": 0.25},
                               {"modality": "series", "shape": [64, 1]}))
    assert ds.x_train.shape[1:] == (64, 1) and len(ds.y_test) == 50


def test_csv(tmp_path):
    rows = ["f0,f1,f2,f3,label"] + [f"{i},{i % 3},{i * 0.5},1,{'yes' if i % 2 else 'no'}" for i in range(40)]
    (tmp_path / "d.csv").write_text("\n".join(rows))
    ds = load_dataset(contract(tmp_path, {"source": "arrays", "path": "d.csv"},
                               {"modality": "series", "shape": [4, 1]}))
    assert ds.class_names == ("no", "yes") and ds.x_train.shape[1:] == (4, 1)


Y2 = np.arange(10) % 2  # two classes, five samples each
NAMES4 = np.array(["a", "b", "c", "d"])


@pytest.mark.parametrize(("arrays", "inp", "message"), [
    ({"x_train": np.zeros((10, 8, 8)), "y_train": np.zeros(9, int), "x_test": np.zeros((2, 8, 8)),
      "y_test": np.zeros(2, int)}, {"modality": "image", "shape": [8, 8, 1]}, "y_train has 9 labels"),
    ({"x_train": np.zeros((10, 8, 8)), "y_train": np.arange(10), "x_test": np.zeros((2, 8, 8)),
      "y_test": np.zeros(2, int), "class_names": NAMES4}, {"modality": "image", "shape": [8, 8, 1]},
     r"6 of 10 labels are outside 0..3"),
    ({"x_train": np.zeros((10, 8, 8)), "y_train": -np.ones(10, int), "x_test": np.zeros((2, 8, 8)),
      "y_test": np.zeros(2, int), "class_names": NAMES4}, {"modality": "image", "shape": [8, 8, 1]},
     "10 of 10 labels are outside 0..3"),
    ({"x_train": np.zeros((10, 9, 9)), "y_train": Y2, "x_test": np.zeros((2, 9, 9)),
      "y_test": Y2[:2]}, {"modality": "image", "shape": [8, 8, 1]}, "task.input.shape"),
    ({"x_train": np.zeros((10, 8, 8)), "y_train": np.full(10, 0.5), "x_test": np.zeros((2, 8, 8)),
      "y_test": np.zeros(2, int)}, {"modality": "image", "shape": [8, 8, 1]}, "integers"),
    ({"features": np.zeros((3, 3))}, {"modality": "image", "shape": [8, 8, 1]}, "expected arrays x_train"),
    ({"x_train": np.full((10, 8, 8), np.nan), "y_train": Y2, "x_test": np.zeros((2, 8, 8)),
      "y_test": Y2[:2]}, {"modality": "image", "shape": [8, 8, 1]}, "10 of 10 samples of x_train contain NaN"),
])
def test_bad_arrays_are_named(tmp_path, arrays, inp, message):
    npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=message) as exc:
        load_dataset(contract(tmp_path, {"source": "arrays", "path": "d.npz"}, inp))
    assert "d.npz" in str(exc.value)


def test_corrupt_npz(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_dataset(contract(tmp_path, {"source": "arrays", "path": "d.npz"}, IMG8))


def make_images(root, classes=("cat", "dog"), n=12, corrupt=0):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    for i in range(corrupt):
        (root / classes[0] / f"bad{i}.png").write_bytes(b"not an image")


def test_image_folder_and_corrupt_files(tmp_path):
    make_images(tmp_path / "imgs", corrupt=2)
    spec = {"source": "image-folder", "path": "imgs"}
    with pytest.raises(DataError, match=r"bad0\.png"):
        load_dataset(contract(tmp_path, spec, {"modality": "image", "shape": [8, 8, 3]}))
    ds = load_dataset(contract(tmp_path, {**spec, "skip_corrupt": True}, {"modality": "image", "shape": [8, 8, 3]}))
    assert ds.skipped == 2 and ds.x_train.shape[1:] == (8, 8, 3) and ds.class_names == ("cat", "dog")
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 24


def test_audio_folder_with_manifest_resamples_and_pads(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    lines = ["path,word,split"]
    rng = np.random.default_rng(0)
    for i in range(16):
        name = f"{i}.wav"
        wavfile.write(root / name, 8000, (rng.normal(size=3000 + 400 * i) * 3000).astype(np.int16))
        lines.append(f"{name},{'up' if i % 2 else 'down'},{'test' if i < 4 else 'train'}")
    (root / "meta.csv").write_text("\n".join(lines))
    spec = {"source": "audio-folder", "path": "audio", "manifest": "meta.csv", "label_column": "word"}
    inp = {"modality": "audio", "sample_rate_hz": 16000, "duration_s": 0.5}
    ds = load_dataset(contract(tmp_path, spec, inp))
    assert ds.x_train.shape[1] == 8000 and len(ds.y_test) == 4 and ds.class_names == ("down", "up")
    assert np.abs(ds.x_train).max() <= 1.0
    with pytest.raises(DataError, match="no 'label' column"):
        load_dataset(contract(tmp_path, {**spec, "label_column": "label"}, inp))


def test_label_count_mismatch_is_named(tmp_path):
    make_images(tmp_path / "imgs", classes=("a", "b", "c"), n=3)
    with pytest.raises(ContractError, match=r"expected 3, the number of classes in the data .*given 5") as exc:
        load_dataset(contract(tmp_path, {"source": "image-folder", "path": "imgs"},
                              {"modality": "image", "shape": [8, 8, 3]}, classes=5))
    (p,) = exc.value.problems
    assert p.path == "task.classes" and "imgs: a, b, c" in p.expected
