"""Deployable artifacts and the report of a finished run: C array, TFLite int8, manifest, Predictor, HTML."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from chipfit import load_run
from chipfit.cli import app
from chipfit.data.sources import load_dataset
from chipfit.runtime import Predictor

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
HAS_LITERT_TORCH = importlib.util.find_spec("litert_torch") is not None


@pytest.fixture
def run_dir(finished_run):
    return finished_run[0]


def test_run_writes_every_artifact(run_dir):
    best = run_dir / "best"
    for name in ("model.onnx", "model.int8.onnx", "model_data.h", "model_data.c", "manifest.json"):
        assert (best / name).exists(), name
    assert (run_dir / "report.html").exists() and (run_dir / "report.json").exists()
    if HAS_LITERT_TORCH:
        assert (best / "model.tflite").exists()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_model_data_compiles_with_werror(run_dir, tmp_path):
    src = str(run_dir / "best" / "model_data.c")
    res = subprocess.run(["gcc", "-c", "-Wall", "-Wextra", "-Werror", "-std=c99", src, "-o", str(tmp_path / "md.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    header = (run_dir / "best" / "model_data.h").read_text()
    assert "CHIPFIT_TENSOR_ARENA_SIZE" in header and "g_model_data_len" in header
    source = (run_dir / "best" / "model_data.c").read_text()
    model = run_dir / "best" / ("model.tflite" if HAS_LITERT_TORCH else "model.int8.onnx")
    assert f"g_model_data_len = {model.stat().st_size}u" in source and "aligned(16)" in source


@pytest.mark.skipif(not HAS_LITERT_TORCH, reason="litert-torch not installed (pip install 'chipfit[tflite]')")
def test_tflite_int8_agrees_with_onnx_int8(run_dir):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(run_dir / "best" / "model.tflite"))
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.int8 and outp["dtype"] == np.int8  # full-integer, int8 I/O
    run = load_run(run_dir)
    data = load_dataset(run.contract)
    raw = data.raw.from_canonical(data.x_test)  # the Predictor takes raw input (digits 0-16)
    ort_pred = Predictor(run_dir).predict(raw)
    lite_pred = Predictor(run_dir, backend="litert").predict(raw)
    agree = float((ort_pred == lite_pred).mean())
    assert agree >= 0.98, agree


@pytest.mark.skipif(not HAS_LITERT_TORCH, reason="litert-torch not installed (pip install 'chipfit[tflite]')")
def test_profile_gives_tflite_and_onnx_the_same_counts(run_dir):
    counts = []
    for name in ("model.tflite", "model.onnx", "model.int8.onnx"):
        res = CliRunner().invoke(app, ["profile", str(run_dir / "best" / name), "--target", "stm32l4r5", "--json"])
        assert res.exit_code == 0, res.output
        d = json.loads(res.stdout)
        counts.append((d["macs"], d["params"]))
    assert counts[0] == counts[1] == counts[2]


def test_predictor_reproduces_test_accuracy_on_raw_inputs(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    run = load_run(run_dir)
    data = load_dataset(run.contract)
    p = Predictor(run_dir / "best" / "manifest.json")
    raw = data.raw.from_canonical(data.x_test)
    acc = float((p.predict(raw) == data.y_test).mean())
    assert acc == pytest.approx(report["test_accuracy_int8"], abs=1e-12)
    one = p.predict(raw[0])
    assert isinstance(one, int) and p.label(raw[0]) == p.labels[one]
    assert p.predict_proba(raw[:3]).sum(axis=1) == pytest.approx(np.ones(3), abs=1e-5)


def test_manifest_holds_recipe_and_provenance(run_dir):
    m = json.loads((run_dir / "best" / "manifest.json").read_text())
    assert m["labels"] == [str(i) for i in range(10)]
    assert m["preprocessing"]["input_shape"][0] == 1 and m["preprocessing"]["mean"]
    assert m["quantization"]["onnx_int8_input"]["scale"] > 0
    assert m["report"]["verdict"] == "PASS" and m["report"]["budgets"] and m["tensor_arena_bytes"] > 0
    prov = m["provenance"]
    assert len(prov["contract_sha256"]) == 64 and prov["data_fingerprint"] and prov["chipfit_version"]
    for info in m["files"].values():
        assert info["bytes"] > 0 and len(info["sha256"]) == 64


def test_export_cli_and_bad_format(run_dir):
    res = CliRunner().invoke(app, ["export", str(run_dir), "--format", "c"])
    assert res.exit_code == 0 and "model_data.c" in res.output
    res = CliRunner().invoke(app, ["export", str(run_dir), "--format", "tflit"])
    assert res.exit_code == 2 and "tflite" in res.output


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(cmd, capture_output=True, env=env, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
        subprocess.run(cmd, capture_output=True, env=env, timeout=900)
    return shutil.which("chromium")


def test_report_html_renders_in_headless_chromium(run_dir):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed and could not be installed (apt-get install chromium)")
    pw = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((run_dir / "report.html").resolve().as_uri())
        table = page.locator("#verdict-table")
        assert table.is_visible()
        text = table.inner_text()
        assert "latency_ms" in text and "PASS" in text and "predicted" in text and "measured" in text
        assert page.locator("img").count() >= 3
        assert page.locator("#references li").count() >= 1  # the numbered sources the page cites
        assert "mean / worst" in page.locator("#robustness-table").inner_text()
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_runtime_imports_no_torch_or_training_stack():
    # pydantic (pure Python + a small compiled core, wheels for arm64) validates the manifest and its typed report
    code = ("import sys, chipfit.runtime\n"
            "names = ('torch', 'optuna', 'sklearn', 'onnx', 'matplotlib', 'yaml', 'typer')\n"
            "heavy = [m for m in names if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    res = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
