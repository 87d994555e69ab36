"""Energy per inference from the CLI: RAPL where readable (reported as not measured where not), and an external
meter's trace integrated over inference windows recorded by `chipfit measure --windows-out`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chipfit.cli", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


def _conv_model(path):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((32, 16, 3, 3)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 48, 48])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 48, 48])], [w])
    path.write_bytes(helper.make_model(g).SerializeToString())
    return path


def test_measure_energy_says_why_when_rapl_cannot_be_read(tmp_path):
    model = _conv_model(tmp_path / "conv.onnx")
    p = _cli("measure", str(model), "--energy", "--rounds", "1", "--runs", "3", "--json")
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)
    assert m["source"] == "measured" and m["energy_method"]
    if m["energy_mj"] is None:  # a VM or container without powercap, or counters not readable
        assert m["energy_method"].startswith("not measured: RAPL")
    else:
        assert m["energy_mj"] > 0 and "RAPL" in m["energy_method"]


def test_trace_energy_over_recorded_windows(tmp_path):
    model = _conv_model(tmp_path / "conv.onnx")
    wfile = tmp_path / "windows.json"
    p = _cli("measure", str(model), "--rounds", "1", "--runs", "2", "--windows-out", str(wfile), "--inferences", "20")
    assert p.returncode == 0, p.stderr
    rec = json.loads(wfile.read_text())
    wins = np.array(rec["windows"])
    assert wins.shape == (20, 2) and np.all(wins[:, 1] > wins[:, 0]) and rec["idle_window"]
    # A meter whose clock starts 0.25 s before the idle window, sampling at 100 kHz: 0.5 W idle, 2.5 W while an
    # inference runs. Energy above idle per inference = 2 W x the window's length.
    offset = 0.25 - rec["idle_window"][0]
    t = np.arange(0.0, wins[-1, 1] + offset + 0.25, 1e-5)
    busy = np.zeros_like(t, dtype=bool)
    for a, b in wins + offset:
        busy |= (t >= a) & (t < b)
    power = np.where(busy, 2.5, 0.5)
    csv = tmp_path / "capture.csv"
    np.savetxt(csv, np.column_stack([t, power * 1e3]), delimiter=",", header="Time (s),Power (mW)", comments="",
               fmt=["%.6f", "%.1f"])
    expected_mj = 2.0 * np.mean(wins[:, 1] - wins[:, 0]) * 1e3
    for extra in ([], ["--offset-s", str(offset)]):
        p = _cli("energy", str(csv), "--windows", str(wfile), "--json", *extra)
        assert p.returncode == 0, p.stderr
        r = json.loads(p.stdout)
        assert r["source"] == "measured" and r["inferences"] == 20
        assert abs(r["energy_mj_per_inference"] / expected_mj - 1) < 0.05, (r, expected_mj)


def test_energy_with_a_bad_windows_file_exits_2(tmp_path):
    (tmp_path / "w.json").write_text("{}")
    (tmp_path / "c.csv").write_text("time,power\n0,1\n1,1\n")
    p = _cli("energy", str(tmp_path / "c.csv"), "--windows", str(tmp_path / "w.json"))
    assert p.returncode == 2 and "chipfit measure --windows-out" in p.stderr and "Traceback" not in p.stderr
