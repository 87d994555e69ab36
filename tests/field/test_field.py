"""Field conditions (conformance over the registry), robustness figures reproducible by hand, drift monitor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from chipfit import load_run
from chipfit.cli import app
from chipfit.data.sources import load_dataset
from chipfit.field.catalog import CONDITIONS
from chipfit.field.conditions import create_condition, list_conditions
from chipfit.quantize.int8 import predict_onnx
from chipfit.robustness.evaluate import field_cases
from chipfit.runtime.drift import DriftMonitor, DriftReference
from chipfit.runtime.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[2]
RAW = {"image": (6, 16, 16, 3), "audio": (6, 8000), "series": (6, 100, 6)}


def raw(modality: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if modality == "audio":
        t = np.arange(8000) / 8000
        return (0.3 * np.sin(2 * np.pi * rng.uniform(200, 800, (6, 1)) * t) + 0.05 * rng.normal(size=(6, 8000))
                ).astype(np.float32)
    if modality == "series":
        return rng.normal(size=RAW[modality]).astype(np.float32)
    return rng.random(RAW[modality], dtype=np.float32)


def test_registry_covers_catalog():
    assert set(list_conditions()) == set(CONDITIONS)
    assert len(list_conditions("image")) == 10 and len(list_conditions("audio")) == 8
    assert len(list_conditions("series")) == 8
    with pytest.raises(KeyError, match="gaussian_noise"):
        create_condition("gausian_noise")


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_condition_conformance(name):
    cond = create_condition(name, sample_rate_hz=8000)
    x = raw(cond.modality)
    for s in cond.grid:
        y = cond.apply(x, s, np.random.default_rng(1))
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        assert np.array_equal(y, cond.apply(x, s, np.random.default_rng(1)))  # seeded
        assert not np.allclose(y, x, atol=1e-6), f"{name} at {s} changed nothing"
        assert np.array_equal(x, raw(cond.modality))  # the input is not modified in place
    if cond.modality == "image":
        assert cond.apply(x, cond.grid[-1], np.random.default_rng(0)).min() >= 0


@pytest.mark.parametrize("name", ["gaussian_noise", "background_noise", "additive_noise", "defocus_blur", "spikes",
                                  "dropout", "occlusion", "haze", "offset_drift", "gain_drift"])
def test_harsher_severity_moves_input_further(name):
    cond = create_condition(name, sample_rate_hz=8000)
    x = raw(cond.modality)
    dist = [np.abs(cond.apply(x, s, np.random.default_rng(0)) - x).mean() for s in cond.grid]
    assert dist == sorted(dist), dist


@pytest.fixture(scope="module")
def field_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("field")
    doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    doc["budgets"]["accuracy"] = 0.5
    doc["budgets"]["field_accuracy"] = {"min": 0.3, "over": "worst"}
    doc["field"] = [{"name": "gaussian_noise", "severity": 0.15}, {"name": "brightness", "range": [0.5, 1.5]}]
    doc["search"].update({"trials": 5, "epochs": 6, "rung_epochs": 2})
    (tmp / "c.yaml").write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["run", str(tmp / "c.yaml"), "--out", str(tmp / "run"), "--json"])
    assert res.exit_code in (0, 3), res.output
    return tmp / "run", json.loads(res.stdout)


def test_condition_applied_by_hand_matches_report(field_run):
    run_dir, report = field_run
    assert report["best"] is not None
    rows = report["robustness"]
    assert [(r["condition"], r["severity"]) for r in rows] == [("gaussian_noise", 0.15), ("brightness", 0.5),
                                                               ("brightness", 1.0), ("brightness", 1.5)]
    run = load_run(run_dir)
    data = load_dataset(run.contract)
    pre = Preprocessor.from_dict(json.loads((run_dir / "best" / "preprocess.json").read_text()))
    case = field_cases(run.contract.field)[0]
    noisy = create_condition("gaussian_noise").apply(data.x_test, 0.15, np.random.default_rng((run.contract.search.seed,
                                                                                              case.index)))
    acc = float((predict_onnx(run_dir / "best" / "model.int8.onnx", pre(noisy)) == data.y_test).mean())
    assert acc == pytest.approx(rows[0]["accuracy"], abs=1e-12)
    assert report["field_accuracy"]["worst"] == min(r["accuracy"] for r in rows)
    fa = next(b for b in report["budgets"] if b["name"] == "field_accuracy")
    assert fa["achieved"] == pytest.approx(report["field_accuracy"]["worst"]) and fa["source"].startswith("measured")


def test_trained_candidates_record_field_accuracy(field_run):
    run_dir, _ = field_run
    recs = [json.loads(x) for x in (run_dir / "candidates.jsonl").read_text().splitlines()]
    done = [r for r in recs if r["state"] == "COMPLETE"]
    assert done and all(0 <= r["accuracy_field_int8"] <= 1 for r in done)


# -- drift monitor --------------------------------------------------------------------------------------------
def clean(modality: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if modality == "image":
        base = rng.uniform(0.3, 0.7, (n, 1, 1, 3))
        return np.clip(base + rng.normal(0, 0.1, (n, 12, 12, 3)), 0, 1).astype(np.float32)
    if modality == "audio":
        t = np.arange(4000) / 8000
        amp = rng.uniform(0.1, 0.5, (n, 1))
        return (amp * np.sin(2 * np.pi * rng.uniform(200, 1200, (n, 1)) * t)
                + 0.02 * rng.normal(size=(n, 4000))).astype(np.float32)
    return (rng.normal(size=(n, 64, 3)) + rng.normal(0, 0.3, (n, 1, 3))).astype(np.float32)


DRIFTS = {
    "image": [("brightness", 0.6), ("gaussian_noise", 0.15)],
    "audio": [("gain_db", -12), ("background_noise", 5)],
    "series": [("offset_drift", 0.5), ("gain_drift", 0.4), ("additive_noise", 0.5)],
}
RATE, WINDOW, DETECT_WITHIN = 0.05, 64, 2


@pytest.fixture(scope="module", params=sorted(DRIFTS))
def reference(request):
    m = request.param
    return m, DriftReference.fit(m, clean(m, 3000, 1), clean(m, 1500, 2), window=WINDOW, false_alarm_rate=RATE,
                                 sample_rate_hz=8000, windows=800)


def test_false_alarm_rate_on_clean_data(reference):
    modality, ref = reference
    test = clean(modality, 400 * WINDOW // 4, 3)
    alarms = 0
    windows = 0
    rng = np.random.default_rng(4)
    for _ in range(400):
        mon = DriftMonitor(ref)
        alarms += mon.update(test[rng.integers(0, len(test), WINDOW)]).alarm
        windows += 1
    rate = alarms / windows
    # the stated rate, with a 3-sigma binomial allowance for 400 windows
    assert rate <= RATE + 3 * np.sqrt(RATE * (1 - RATE) / windows), rate


def test_injected_drift_is_detected_and_named(reference):
    modality, ref = reference
    stream = clean(modality, DETECT_WITHIN * WINDOW, 5)
    for name, severity in DRIFTS[modality]:
        drifted = create_condition(name, sample_rate_hz=8000).apply(stream, severity, np.random.default_rng(6))
        mon = DriftMonitor(ref)
        statuses = [mon.update(drifted[i:i + WINDOW]) for i in range(0, len(drifted), WINDOW)]
        assert any(s.alarm for s in statuses), (name, [s.score for s in statuses], ref.threshold)
        assert statuses[-1].feature in ref.names


def test_reference_round_trips(reference):
    _, ref = reference
    assert DriftReference.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
