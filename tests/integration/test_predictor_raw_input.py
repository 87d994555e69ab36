"""The Predictor's raw-input contract on a finished run: scikit-learn's raw digits (0-16) in, the run's test
accuracy out; the manifest states what raw input is; wrong shapes and pre-scaled input are named."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

from chipfit.data.dataset import split_val
from chipfit.data.sources import TEST_SEED
from chipfit.runtime import Predictor
from chipfit.runtime.manifest import Manifest
from chipfit.runtime.preprocess import InputError, InputRangeWarning


def _raw_digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits exactly as it ships them (float64 grey levels 0-16), the run's test split."""
    d = load_digits()
    _, _, x_te, y_te = split_val(d.images[..., None], d.target, 0.2, TEST_SEED)
    return x_te, y_te


def test_predictor_on_raw_sklearn_digits_reproduces_the_runs_test_accuracy(finished_run):
    run_dir, _ = finished_run
    report = json.loads((run_dir / "report.json").read_text())
    x_raw, y = _raw_digits_test_split()
    assert x_raw.dtype == np.float64 and x_raw.max() == 16.0 and len(y) == 360
    p = Predictor(run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)  # raw 0-16 input is in range: no warning
        acc = float((p.predict(x_raw) == y).mean())
    assert acc == pytest.approx(report["test_accuracy_int8"], abs=1e-12)
    assert acc >= 0.9, acc
    # one sample at a time, as a device sees them, gives the same labels
    assert [p.label(x) for x in x_raw[:20]] == [p.labels[i] for i in p.predict(x_raw[:20])]


def test_manifest_states_the_raw_input_and_recipe_agrees(finished_run):
    run_dir, _ = finished_run
    m = Manifest.load(run_dir / "best" / "manifest.json")
    i = m.input
    assert (i.modality, i.shape, i.layout, i.dtype) == ("image", [8, 8, 1], "HWC", "float64")
    assert i.range == (0.0, 16.0) and i.range_kind == "nominal" and i.scale == pytest.approx(1 / 16)
    assert "load_digits().images" in i.example and "0-16" in i.description
    assert m.preprocessing["raw"]["scale"] == i.scale and m.preprocessing["raw"]["range"] == list(i.range)


def test_predictor_names_the_expected_shape_and_range(finished_run):
    run_dir, _ = finished_run
    p = Predictor(run_dir)
    x_raw, _ = _raw_digits_test_split()
    with pytest.raises(InputError, match=r"expected shape \[8, 8, 1\] \(one sample\) or \[N, 8, 8, 1\] \(a batch\)"
                                         r".*given \(64,\).*reshape") as e:
        p.predict(x_raw[0].reshape(64))
    assert isinstance(e.value, ValueError)
    with pytest.raises(InputError, match=r"given \(5, 8, 8\). Add the channel axis"):
        p.predict(x_raw[:5, ..., 0])
    with pytest.warns(InputRangeWarning, match=r"look already scaled to \[0, 1\]. Pass the raw values"):
        p.predict(x_raw[:5] / 16)
    with pytest.warns(InputRangeWarning, match=r"expected raw values in \[0, 16\].*given values in \[0, 255\]"):
        p.predict(x_raw[:5] * 255 / 16)
    with pytest.raises(InputError, match=r"expected raw values in \[0, 16\]"):
        Predictor(run_dir, strict=True).predict(x_raw[:5] * 255 / 16)
    with pytest.raises(InputError, match="NaN or infinite"):
        p.predict(np.full((8, 8, 1), np.nan))
