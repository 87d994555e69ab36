"""Every contract in examples/ is exercised: it validates, `chipfit check` runs, and a tiny `chipfit run`
(2 candidates, 1 epoch) goes end to end. Contracts on ../shared/data skip when it is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from chipfit import check_contract, load_contract
from chipfit.cli import app
from chipfit.data.sources import load_dataset
from chipfit.runtime import Predictor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHARED_PREFIX = "../../shared/data"
ALL = sorted(p.name for p in EXAMPLES.glob("*.yaml"))


def materialise(name: str, shared: Path | None, tmp_path: Path, **search) -> Path:
    """The example with its shared-data path pointed at the fixture's folder and a tiny search."""
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    data = doc["task"]["data"]
    if "path" in data:
        if shared is None:
            pytest.skip("needs ../shared/data")
        data["path"] = str(shared / data["path"].removeprefix(SHARED_PREFIX + "/"))
    if isinstance(doc["target"], str) and doc["target"].endswith(".yaml"):
        doc["target"] = str(EXAMPLES / doc["target"])
    doc.setdefault("search", {}).update(search)
    out = tmp_path / name
    out.write_text(yaml.safe_dump(doc))
    return out


def uses_shared(name: str) -> bool:
    return "path" in yaml.safe_load((EXAMPLES / name).read_text())["task"]["data"]


@pytest.mark.parametrize("name", ALL)
def test_example_checks(name, tmp_path, request):
    shared = request.getfixturevalue("shared_data") if uses_shared(name) else None
    c = load_contract(materialise(name, shared, tmp_path))
    report = check_contract(c, samples=8)
    assert report.feasible, (name, report.binding)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if n != "kws-my-board.yaml"])
def test_example_runs_end_to_end(name, tmp_path, request):
    shared = request.getfixturevalue("shared_data") if uses_shared(name) else None
    # no QAT fine-tuning (after one epoch int8 often loses a point, and QAT's own epochs would dominate the test;
    # tests/quantize/test_qat.py covers it) and no warm start (the largest configs that fit train longest;
    # tests/search/test_warmstart.py covers it)
    path = materialise(name, shared, tmp_path, trials=2, epochs=1, rung_epochs=1, calibration_samples=32,
                       recipe={"qat": False}, warm_start=False)
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run"), "--json"])
    assert res.exit_code in (0, 3), res.output[-3000:]
    report = json.loads(res.stdout)
    assert sum(report["counts"].values()) == 2
    if report["best"] is not None:
        assert (tmp_path / "run" / "best" / "model.int8.onnx").exists()
        assert 0.0 <= report["test_accuracy_int8"] <= 1.0
        # the Predictor on raw input (PCM, 0-255 pixels, windows as stored) reproduces the run's test accuracy
        data = load_dataset(load_contract(tmp_path / "run" / "contract.yaml"))
        raw = data.raw.from_canonical(data.x_test)
        acc = float((Predictor(tmp_path / "run").predict(raw) == data.y_test).mean())
        assert acc == pytest.approx(report["test_accuracy_int8"], abs=1e-12), (name, data.raw)
