"""RawInput, the raw-input contract of every data source: shape and dtype errors, the range policy, the
scaling each source applies and states (digits 0-16, 8-bit images, PCM audio, series as given)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from chipfit import load_contract
from chipfit.data.sources import load_dataset
from chipfit.runtime.preprocess import InputError, InputRangeWarning, Preprocessor, RawInput

DIGITS = RawInput(shape=(8, 8, 1), layout="HWC", dtype="float64", range=(0.0, 16.0), scale=1 / 16)


def test_shape_errors_say_what_was_expected_and_what_to_do():
    with pytest.raises(InputError, match=r"expected shape \[8, 8, 1\] \(one sample\) or \[N, 8, 8, 1\] \(a batch\), "
                                         r"layout HWC; given \(64,\)\. .*reshape it: x.reshape\(-1, 8, 8, 1\)"):
        DIGITS.check(np.zeros(64))
    with pytest.raises(InputError, match=r"given \(8, 8\)\. Add the channel axis: x\[\.\.\., None\]"):
        DIGITS.check(np.zeros((8, 8)))
    with pytest.raises(InputError, match="expected numbers"):
        DIGITS.check(np.array([["a"] * 8] * 8))
    batch, single = DIGITS.check(np.zeros((8, 8, 1)))
    assert single and batch.shape == (1, 8, 8, 1)
    batch, single = DIGITS.check(np.zeros((3, 8, 8, 1), np.uint8))
    assert not single and batch.shape == (3, 8, 8, 1)


def test_range_policy_tolerance_warning_strict_and_observed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DIGITS.check(np.full((8, 8, 1), 16.1))  # within 1 % of the range's width
        DIGITS.check(np.zeros((8, 8, 1)))  # a blank image is not "already scaled"
    with pytest.warns(InputRangeWarning, match=r"expected raw values in \[0, 16\] \(nominal\).*given values in "
                                               r"\[17, 17\]"):
        DIGITS.check(np.full((8, 8, 1), 17.0))
    with pytest.raises(InputError, match="given values in"):
        DIGITS.check(np.full((8, 8, 1), -3.0), strict=True)
    with pytest.warns(InputRangeWarning, match="already scaled"):
        DIGITS.check(np.full((8, 8, 1), 0.5))
    observed = RawInput((4, 2), "TC", "float32", (-1.0, 1.0), "observed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        observed.check(np.full((4, 2), 50.0))  # beyond the training data: the drift monitor's business


def test_recipe_scales_raw_input_and_round_trips():
    x = np.random.default_rng(0).integers(0, 17, (20, 8, 8, 1)).astype(np.float32) / 16
    pre = Preprocessor.fit(x, "image", (1, 1, 8, 8), raw=DIGITS)
    again = Preprocessor.from_dict(pre.to_dict())
    assert again == pre and again.raw == DIGITS
    np.testing.assert_array_equal(again.from_raw(DIGITS.from_canonical(x)), pre(x))
    old = {k: v for k, v in pre.to_dict().items() if k != "raw"}  # a recipe from before: canonical input
    assert Preprocessor.from_dict(old).raw is None


def test_builtin_digits_state_their_raw_range():
    ds = load_dataset(load_contract(Path(__file__).resolve().parents[2] / "examples" / "digits.yaml"))
    assert ds.raw is not None and ds.raw.range == (0.0, 16.0) and ds.raw.scale == 1 / 16
    assert ds.x_train.max() == 1.0
    from sklearn.datasets import load_digits

    assert float(load_digits().images.max()) == ds.raw.range[1]


def _contract(tmp_path: Path, data: dict, inp: dict) -> object:
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "digits.yaml").read_text())
    doc["task"] = {"data": data, "input": inp}
    doc["field"] = []  # the digits' image conditions do not apply to every modality
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_contract(path)


def test_every_source_states_what_raw_means(tmp_path):
    from PIL import Image
    from scipy.io import wavfile

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    # image arrays, uint8 0-255 -> scaled by 1/255
    np.savez(tmp_path / "img.npz", x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y=y)
    ds = load_dataset(_contract(tmp_path, {"source": "arrays", "path": "img.npz"}, {"modality": "image",
                                                                                    "shape": [8, 8, 1]}))
    assert (ds.raw.dtype, ds.raw.range, ds.raw.range_kind, ds.raw.scale) == ("uint8", (0.0, 255.0), "nominal", 1 / 255)
    # series arrays: as given, observed range
    np.savez(tmp_path / "ser.npz", x=rng.normal(0, 3, (40, 16, 2)).astype(np.float32), y=y)
    ds = load_dataset(_contract(tmp_path, {"source": "arrays", "path": "ser.npz"}, {"modality": "series",
                                                                                    "shape": [16, 2]}))
    assert ds.raw.range_kind == "observed" and ds.raw.scale == 1.0 and ds.raw.shape == (16, 2)
    # image folder: uint8 pixels 0-255
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for k in range(20):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / label / f"{k}.png")
    ds = load_dataset(_contract(tmp_path, {"source": "image-folder", "path": "imgs"}, {"modality": "image",
                                                                                       "shape": [8, 8, 3]}))
    assert (ds.raw.dtype, ds.raw.shape, ds.raw.range, ds.raw.scale) == ("uint8", (8, 8, 3), (0.0, 255.0), 1 / 255)
    assert "resize((8, 8))" in ds.raw.example
    # audio folder: int16 PCM, scaled by 1/32768
    for label in ("a", "b"):
        (tmp_path / "wav" / label).mkdir(parents=True)
        for k in range(20):
            wavfile.write(tmp_path / "wav" / label / f"{k}.wav", 8000,
                          (rng.normal(0, 3000, 8000)).astype(np.int16))
    ds = load_dataset(_contract(tmp_path, {"source": "audio-folder", "path": "wav"},
                                {"modality": "audio", "sample_rate_hz": 8000, "duration_s": 1}))
    assert (ds.raw.dtype, ds.raw.shape, ds.raw.scale, ds.raw.sample_rate_hz) == ("int16", (8000,), 1 / 32768, 8000.0)
    pcm = ds.raw.from_canonical(ds.x_test)
    np.testing.assert_allclose(ds.raw.to_canonical(pcm), ds.x_test, atol=1 / 32768)
