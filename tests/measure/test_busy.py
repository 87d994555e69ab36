"""Busy-machine detection: a planted slow reference workload or high steal time marks a measurement busy,
``chipfit calibrate`` refuses then (unless told otherwise), and /proc/stat is read right."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from chipfit.cli import app
from chipfit.cost.calibration import read_reference_baseline, record_reference
from chipfit.measure import reference
from chipfit.measure.calibrate import BusyMachineError, calibrate
from chipfit.measure.fake import FakeRuntime, fake_model
from chipfit.measure.local import OrtRuntime
from chipfit.measure.record import Measurement
from chipfit.measure.reference import CpuTimes, MachineState, cpu_usage, judge, wait_until_quiet


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHIPFIT_CACHE_DIR", str(tmp_path / "cache"))


def test_judge_flags_a_slow_reference_or_stolen_time_and_nothing_else():
    quiet = judge(MachineState(reference_ms=0.105, reference_baseline_ms=0.1, steal_pct=0.5))
    assert quiet.busy is False and quiet.busy_reason == ""
    slow = judge(MachineState(reference_ms=0.13, reference_baseline_ms=0.1, steal_pct=0.0))
    assert slow.busy and "30% slower than its baseline" in slow.busy_reason
    stolen = judge(MachineState(reference_ms=0.1, reference_baseline_ms=0.1, steal_pct=12.0))
    assert stolen.busy and "stolen by the hypervisor" in stolen.busy_reason
    assert judge(MachineState()).busy is None  # nothing read: not checked, not "quiet"
    assert MachineState.from_dict(slow.to_dict()) == slow


def test_steal_and_other_processes_are_read_from_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n")
    a = CpuTimes.now(stat)
    stat.write_text("cpu  200 0 100 900 50 0 0 100 0 0\ncpu0 1 2 3\n")
    b = CpuTimes.now(stat)
    assert a is not None and b is not None
    steal, others = cpu_usage(a, b)
    assert steal == pytest.approx(100 * 100 / 350, abs=0.01)
    assert others is not None and 0 <= others <= 100
    stat.write_text("intr 1 2 3\n")
    assert CpuTimes.now(stat) is None and cpu_usage(None, b) == (None, None)


def test_a_planted_slow_reference_marks_the_measurement_busy(monkeypatch):
    key = reference.baseline_key(1)
    fast = reference.reference_fn(1)
    record_reference(key, 0.02)  # the quiet machine ran the reference in 20 us

    def slow_reference(threads: int = 1):
        def run() -> None:
            fast()
            time.sleep(0.002)  # another job holds the core: the reference takes ~2 ms

        return run

    monkeypatch.setattr(reference, "reference_fn", slow_reference)
    m = OrtRuntime().measure(fake_model(macs=2000), rounds=2, runs=3, warmup=1)
    assert m.busy is True and "slower than its baseline" in m.busy_reason
    assert m.reference_ms > 1.0 and m.reference_baseline_ms == pytest.approx(0.02)
    assert m.rescaled_ms() == pytest.approx(m.latency_ms * 0.02 / m.reference_ms)
    assert "BUSY" in m.label()
    assert Measurement.from_dict(m.to_dict()) == m
    # the reading joins the store, but the baseline stays the fastest one seen
    assert read_reference_baseline(key)["min_ms"] == pytest.approx(0.02)


def test_a_quiet_measurement_says_so_and_keeps_the_latency():
    m = OrtRuntime().measure(fake_model(macs=2000), rounds=2, runs=5)
    assert m.reference_ms is not None and m.reference_ms > 0 and m.busy in (True, False)
    assert m.reference_baseline_ms is None or m.reference_baseline_ms > 0
    no_ref = OrtRuntime().measure(fake_model(macs=2000), rounds=1, runs=2, reference=False)
    assert no_ref.reference_ms is None and no_ref.busy is None and no_ref.rescaled_ms() == no_ref.latency_ms


class _LocalFake(FakeRuntime):
    local = True  # stands in for a runtime on this machine, so calibrate checks the machine first


BUSY = MachineState(reference_ms=0.2, reference_baseline_ms=0.1, steal_pct=0.0, busy=True,
                    busy_reason="reference workload 100% slower than its baseline (200 us vs 100 us; threshold 15%)")


def test_calibrate_refuses_a_busy_machine_unless_told(monkeypatch, tmp_path):
    monkeypatch.setattr(reference, "check_machine", lambda **kw: BUSY)
    with pytest.raises(BusyMachineError, match=r"busy before calibrating.*--allow-busy"):
        calibrate("host", runtime=_LocalFake(), probes=5, workdir=tmp_path / "p", save=False)
    cal = calibrate("host", runtime=_LocalFake(), probes=5, ordinary=2, workdir=tmp_path / "p2", save=False,
                    allow_busy=True)
    assert cal.measurements == 5 and "2 ordinary CNNs" in cal.source


def test_calibrate_waits_for_the_machine_to_calm_down(monkeypatch):
    states = iter([BUSY, BUSY, MachineState(reference_ms=0.1, reference_baseline_ms=0.1, busy=False)])
    st = wait_until_quiet(5.0, poll_s=0.01, check=lambda: next(states))
    assert st.busy is False
    st = wait_until_quiet(0.05, poll_s=0.01, check=lambda: BUSY)
    assert st.busy is True


def test_chipfit_calibrate_refuses_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(reference, "check_machine", lambda **kw: BUSY)
    r = CliRunner().invoke(app, ["calibrate", "--target", "host", "--probes", "5"])
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert "the machine is busy before calibrating" in out and "100% slower than its baseline" in out
    assert "--allow-busy" in out and "--wait" in out
