"""Every hint the CLI prints works when followed: each test provokes a message, takes the command or the fix it
suggests from the message itself, applies it, and checks that it then succeeds."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from chipfit.cli import app

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hint-test-token-0123456789abcdef"


def cli(*args: str, **kw) -> object:
    return CliRunner().invoke(app, list(args), **kw)


def suggested(text: str, start: str = "chipfit ") -> list[list[str]]:
    """The commands a message suggests, quoted '...' or `...`, as argument lists without 'chipfit'."""
    cmds = re.findall(r"['`](" + re.escape(start) + r"[^'`]+)['`]", text)
    return [shlex.split(c)[1:] for c in cmds]


def conv_model(path: Path) -> Path:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4, 3, 3)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], [w])
    path.write_bytes(helper.make_model(g).SerializeToString())
    return path


@pytest.fixture
def agent(tmp_path) -> Iterator[tuple[str, Path]]:
    """A device agent on a free loopback port, in this process: (url, token file)."""
    import uvicorn

    from chipfit.agent.server import create_app, uvicorn_config

    token = tmp_path / "agent.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(create_app(TOKEN, workdir=tmp_path / "agent-work")))
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert th.is_alive() and time.monotonic() < deadline, "the agent did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", token
    server.should_exit = True
    th.join(10)


# -- names: "Did you mean" -------------------------------------------------------------------------------------
def test_devices_did_you_mean_and_catalog_hint():
    r = cli("devices", "stm32h734")
    assert r.exit_code == 2
    name = re.search(r"Did you mean '([^']+)'", r.output).group(1)
    assert cli("devices", name).exit_code == 0
    (catalog,) = suggested(r.output)
    assert catalog == ["devices"] and cli(*catalog).exit_code == 0


def test_devices_show_did_you_mean():
    r = cli("devices", "show", "nrf52480")
    assert r.exit_code == 2
    name = re.search(r"Did you mean '([^']+)'", r.output).group(1)
    assert cli("devices", "show", name).exit_code == 0


def test_schema_did_you_mean():
    r = cli("schema", "reprot")
    assert r.exit_code == 2
    name = re.search(r"Did you mean '([^']+)'", r.output).group(1)
    assert cli("schema", name).exit_code == 0


@pytest.mark.parametrize("key, wrong", [("target", "stm32h734"), ("runtime", "tflm-cmsisnn")])
def test_contract_did_you_mean(tmp_path, key, wrong):
    doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    doc[key] = wrong
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(doc))
    r = cli("check", str(p), "--samples", "8")
    assert r.exit_code == 2
    doc[key] = re.search(r"Did you mean '([^']+)'", r.output).group(1)
    p.write_text(yaml.safe_dump(doc))
    assert cli("check", str(p), "--samples", "8").exit_code in (0, 3)  # valid: judged, feasible or not


def test_contract_field_condition_did_you_mean(tmp_path):
    doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    doc["field"][0]["name"] = "gausian_noise"
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(doc))
    r = cli("check", str(p), "--samples", "8")
    assert r.exit_code == 2
    doc["field"][0]["name"] = re.search(r"Did you mean '([^']+)'", r.output).group(1)
    p.write_text(yaml.safe_dump(doc))
    assert cli("check", str(p), "--samples", "8").exit_code in (0, 3)


def test_contract_runtime_that_the_core_cannot_run(tmp_path):
    doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    doc["runtime"] = "onnxruntime"  # a Cortex-M4 board
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(doc))
    r = cli("check", str(p), "--samples", "8")
    assert r.exit_code == 2 and "Remove 'runtime' to use the device's default" in r.output
    del doc["runtime"]
    p.write_text(yaml.safe_dump(doc))
    assert cli("check", str(p), "--samples", "8").exit_code in (0, 3)


# -- calibrate ----------------------------------------------------------------------------------------------------
@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """The calibrations these tests save stay in their own cache: a 3-probe calibration of host or rpi5 in the
    session's cache would price every later test's predictions on this worker (and stop a run from calibrating)."""
    monkeypatch.setenv("CHIPFIT_CACHE_DIR", str(tmp_path / "cache"))


def test_calibrate_an_mcu_suggests_commands_that_work(own_cache):
    """stm32l4r5 runs no ONNX Runtime: the hint must not suggest 'stm32l4r5.onnxruntime' (refused)."""
    r = cli("calibrate", "--target", "stm32l4r5")
    assert r.exit_code == 2 and "stm32l4r5.onnxruntime" not in r.output
    cmds = suggested(r.output)
    assert ["devices", "show", "stm32l4r5"] in cmds and ["calibrate", "--target", "host"] in cmds
    assert cli("devices", "show", "stm32l4r5").exit_code == 0
    # fewer probes than the default: quick; --allow-busy: the suite keeps this machine busy (see test_busy.py)
    done = cli("calibrate", "--target", "host", "--probes", "3", "--json", "--allow-busy")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["measurements"] == 3


def test_calibrate_a_board_that_runs_onnxruntime_through_its_agent(agent, own_cache):
    url, token = agent
    r = cli("calibrate", "--target", "rpi5")
    if "runtime is onnxruntime" in r.output:
        pytest.skip("rpi5's default runtime is onnxruntime")
    assert r.exit_code == 2
    (cmd,) = [c for c in suggested(r.output) if c[:1] == ["calibrate"]]
    assert cmd[:3] == ["calibrate", "--target", "rpi5.onnxruntime"]
    cmd = [{"URL": url, "F": str(token)}.get(a, a) for a in cmd]
    # --allow-busy: the suite's other worker keeps this machine busy (busy detection: tests/measure/test_busy.py)
    done = cli(*cmd, "--probes", "3", "--json", "--allow-busy")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["runtime"] == "onnxruntime"


def test_calibrate_a_board_without_its_agent_and_host_through_an_agent(agent, own_cache):
    url, token = agent
    r = cli("calibrate", "--target", "rpi5.onnxruntime")
    assert r.exit_code == 2 and "--agent URL --token-file F" in r.output and "chipfit agent" in r.output
    r = cli("calibrate", "--target", "host", "--agent", url, "--token-file", str(token))
    assert r.exit_code == 2 and "--target rpi5.onnxruntime" in r.output
    # both name 'calibrate --target rpi5.onnxruntime --agent URL --token-file F', followed (and measured) above


# -- model files ----------------------------------------------------------------------------------------------------
def test_profile_of_a_missing_model_file_exits_2_and_names_what_works(tmp_path):
    r = cli("profile", str(tmp_path / "nope.onnx"), "--target", "stm32h743")
    assert r.exit_code == 2 and "no model file at" in r.output and "Traceback" not in r.output
    arch = re.search(r"reference architecture: ([\w.-]+)", r.output).group(1)
    assert cli("profile", arch, "--target", "stm32h743").exit_code == 0
    m = cli("measure", str(tmp_path / "nope.onnx"))
    assert m.exit_code == 2 and "no model file at" in m.output


def test_measure_through_an_agent_without_its_token(agent, tmp_path):
    url, token = agent
    model = conv_model(tmp_path / "conv.onnx")
    r = cli("measure", str(model), "--agent", url)
    assert r.exit_code == 2 and "--token-file FILE" in r.output
    done = cli("measure", str(model), "--agent", url, "--token-file", str(token), "--rounds", "1", "--runs", "3",
               "--json")
    assert done.exit_code == 0, done.output


def test_measure_through_an_agent_with_the_wrong_token(agent, tmp_path):
    url, token = agent
    model = conv_model(tmp_path / "conv.onnx")
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-agents-token-0123456789\n")
    wrong.chmod(0o600)
    r = cli("measure", str(model), "--agent", url, "--token-file", str(wrong))
    assert r.exit_code != 0 and "check --token-file" in r.output and "Traceback" not in r.output
    done = cli("measure", str(model), "--agent", url, "--token-file", str(token), "--rounds", "1", "--runs", "3")
    assert done.exit_code == 0, done.output


# -- energy -------------------------------------------------------------------------------------------------------
def test_rapl_unavailable_points_to_the_energy_commands_and_they_work(tmp_path):
    from chipfit.errors import MeasurementError
    from chipfit.measure.power import RaplMeter

    with pytest.raises(MeasurementError) as e:
        RaplMeter(root=tmp_path / "no-powercap").zones()
    msg = str(e.value)
    assert "chipfit.measure" not in msg  # a command, not a Python function
    measure, energy = suggested(msg)
    assert measure[0] == "measure" and energy[0] == "energy"
    model = conv_model(tmp_path / "conv.onnx")
    wfile = tmp_path / "windows.json"
    measure = [{"MODEL": str(model), "windows.json": str(wfile)}.get(a, a) for a in measure]
    r = cli(*measure, "--rounds", "1", "--runs", "2", "--inferences", "10")
    assert r.exit_code == 0, r.output
    rec = json.loads(wfile.read_text())
    wins = np.array(rec["windows"])
    # a meter on the host's clock: 0.5 W idle, 2.5 W while an inference runs
    t = np.arange(rec["idle_window"][0] - 0.1, wins[-1, 1] + 0.1, 1e-5)
    busy = np.zeros_like(t, dtype=bool)
    for a, b in wins:
        busy |= (t >= a) & (t < b)
    csv = tmp_path / "capture.csv"
    np.savetxt(csv, np.column_stack([t, np.where(busy, 2.5, 0.5) * 1e3]), delimiter=",",
               header="Time (s),Power (mW)", comments="", fmt=["%.6f", "%.1f"])
    energy = [{"CAPTURE.csv": str(csv), "windows.json": str(wfile)}.get(a, a) for a in energy]
    r = cli(*energy, "--offset-s", "0", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["inferences"] == 10


# -- the agent's token -------------------------------------------------------------------------------------------
def test_agent_without_a_token_file_says_how_to_make_one_and_that_works(tmp_path):
    r = cli("agent")
    assert r.exit_code == 2
    make = re.search(r"create one with: (.+ && chmod 600 agent\.token)", r.output).group(1)
    subprocess.run(["bash", "-c", make], cwd=tmp_path, check=True, timeout=60)
    assert len((tmp_path / "agent.token").read_text().strip()) >= 32
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "chipfit.cli", "agent", "--token-file", "agent.token",
                             "--port", str(port)], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = [proc.stderr.readline() for _ in range(1)]
        while "listening on" not in lines[-1] and lines[-1] and len(lines) < 50:
            lines.append(proc.stderr.readline())
        assert "listening on" in lines[-1], lines
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)


# -- a finished run -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_predictor_without_a_manifest_says_export_and_export_works(finished_run, tmp_path):
    import shutil

    from chipfit.errors import ChipfitError
    from chipfit.runtime import Predictor

    run = tmp_path / "copy"
    shutil.copytree(finished_run[0], run)
    (run / "best" / "manifest.json").unlink()
    with pytest.raises(ChipfitError) as e:
        Predictor(run)
    cmd = re.search(r"\((chipfit export RUN_DIR[^)]*)\)", str(e.value)).group(1)
    args = [str(run) if a == "RUN_DIR" else a for a in shlex.split(cmd)[1:]]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert Predictor(run).manifest is not None
    # a manifest from another chipfit version says how to re-export it; that works too
    path = run / "best" / "manifest.json"
    doc = json.loads(path.read_text())
    doc["manifest_version"] = 1
    path.write_text(json.dumps(doc))
    with pytest.raises(ChipfitError) as e:
        Predictor(run)
    (cmd,) = suggested(str(e.value))
    r = cli(*[str(run) if a == "RUN_DIR" else a for a in cmd])
    assert r.exit_code == 0, r.output
    assert Predictor(run).manifest is not None


@pytest.mark.slow
def test_export_without_best_says_report_and_a_format_typo_says_did_you_mean(finished_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished_run[0], run)
    shutil.rmtree(run / "best")
    r = cli("export", str(run), "--format", "manifest")
    assert r.exit_code == 1 and "best/ is missing" in r.output
    (cmd,) = suggested(r.output)
    assert cmd == ["report", str(run)]
    assert cli(*cmd).exit_code == 0
    r = cli("export", str(run), "--format", "manifset")
    assert r.exit_code == 2
    fmt = re.search(r"Did you mean '([^']+)'", r.output).group(1)
    done = cli("export", str(run), "--format", fmt)
    assert done.exit_code == 0, done.output
    assert (run / "best" / "manifest.json").is_file()
