"""Power meters: RAPL against a fake sysfs tree, CSV traces with a known square wave, clock alignment."""

from __future__ import annotations

import json
import os
import pathlib
from pathlib import Path

import numpy as np
import pytest

from chipfit.errors import ChipfitError, MeasurementError
from chipfit.measure.power import (
    EnergyReading,
    PowerTrace,
    RaplMeter,
    TraceMeter,
    align_offset,
    energy_per_inference,
    load_trace,
)

IDLE_W, BUSY_W = 0.050, 0.250
RATE_HZ = 10_000
INFER_S = 0.010
# 10 inferences of 10 ms every 50 ms from 0.2 s, in a 1 s trace (idle before and after).
START_IDX = [2000 + 500 * k for k in range(10)]
WINDOWS = [(i / RATE_HZ, (i + INFER_S * RATE_HZ) / RATE_HZ) for i in START_IDX]
EXPECTED_MJ = BUSY_W * INFER_S * 1e3  # 2.5 mJ per inference
ABOVE_IDLE_MJ = (BUSY_W - IDLE_W) * INFER_S * 1e3  # 2.0 mJ


def square_wave(n: int = RATE_HZ) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n) / RATE_HZ
    p = np.full(n, IDLE_W)
    for i in START_IDX:
        p[i:i + int(INFER_S * RATE_HZ)] = BUSY_W
    return t, p


def write_csv(path: Path, header: str, columns: list[np.ndarray], preamble: str = "") -> Path:
    rows = "\n".join(",".join(f"{v:.9g}" for v in row) for row in zip(*columns, strict=True))
    path.write_text(preamble + header + "\n" + rows + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ records


def test_energy_reading_round_trips_through_json():
    r = EnergyReading(energy_mj_per_inference=2.5, inferences=10, mean_power_mw=250.0, duration_s=0.1,
                      method="RAPL package-0", idle_power_mw=50.0)
    d = json.loads(json.dumps(r.to_dict()))
    assert EnergyReading.from_dict(d) == r
    assert d["source"] == "measured"


def test_power_trace_validates_and_is_read_only():
    tr = PowerTrace(time_s=[0, 1, 2], power_w=[1, 1, 1], source="x.csv")
    with pytest.raises(ValueError):
        tr.power_w[0] = 5.0
    with pytest.raises(MeasurementError, match=r"strictly increasing time; sample 2"):
        PowerTrace(time_s=[0, 1, 1], power_w=[1, 1, 1])
    with pytest.raises(MeasurementError, match="at least 2 samples"):
        PowerTrace(time_s=[0], power_w=[1])
    with pytest.raises(MeasurementError, match="same length"):
        PowerTrace(time_s=[0, 1], power_w=[1, 1, 1])
    with pytest.raises(MeasurementError, match="finite power_w"):
        PowerTrace(time_s=[0, 1], power_w=[1, float("nan")])
    assert isinstance(MeasurementError("x"), ChipfitError)


# ------------------------------------------------------------------------------------------------ RAPL


class FakeRapl:
    """A powercap tree in tmp_path; ``infer()`` adds known energy to each zone and advances a fake clock."""

    def __init__(self, root: Path, zones: dict[str, tuple[str, int, int]]) -> None:
        # zones: folder -> (name, initial energy_uj, max_energy_range_uj)
        self.root = root
        self.now = 0.0
        self.max = {}
        for folder, (name, energy, rng) in zones.items():
            d = root / folder
            d.mkdir(parents=True)
            (d / "name").write_text(name + "\n")
            (d / "energy_uj").write_text(f"{energy}\n")
            (d / "max_energy_range_uj").write_text(f"{rng}\n")
            self.max[folder] = rng

    def add(self, folder: str, uj: int) -> None:
        f = self.root / folder / "energy_uj"
        f.write_text(f"{(int(f.read_text()) + uj) % self.max[folder]}\n")

    def clock(self) -> float:
        return self.now


@pytest.fixture
def rapl(tmp_path):
    root = tmp_path / "powercap"
    fake = FakeRapl(root, {
        "intel-rapl:0": ("package-0", 1_000, 262_143_328_850),
        "intel-rapl:1": ("package-1", 2**20 - 3_000, 2**20),         # wraps during the run
        "intel-rapl:0:0": ("core", 0, 2**32),                       # sub-zone: ignored
        "intel-rapl:2": ("psys", 0, 2**32),                         # ignored while packages exist
        "intel-rapl-mmio:0": ("package-0", 0, 2**32),               # duplicate interface: ignored
    })
    (root / "intel-rapl").mkdir()                                   # the control-type folder has no zone files

    def infer():  # 250 mW for 10 ms = 2500 uJ, split over the two packages; junk in ignored zones
        fake.add("intel-rapl:0", 1_500)
        fake.add("intel-rapl:1", 1_000)
        for junk in ("intel-rapl:0:0", "intel-rapl:2", "intel-rapl-mmio:0"):
            fake.add(junk, 999_999)
        fake.now += INFER_S

    def sleep(s):  # idle at 50 mW
        uj = round(IDLE_W * s * 1e6)
        fake.add("intel-rapl:0", uj // 2)
        fake.add("intel-rapl:1", uj - uj // 2)
        fake.now += s

    return fake, infer, sleep


def test_rapl_sums_package_zones_and_handles_wraparound(rapl):
    fake, infer, sleep = rapl
    meter = RaplMeter(fake.root, clock=fake.clock, sleep=sleep)
    assert meter.available()
    assert [z.name for z in meter.zones()] == ["package-0", "package-1"]
    r = meter.measure(infer, inferences=20)
    assert int((fake.root / "intel-rapl:1" / "energy_uj").read_text()) < 2**20 - 3_000  # it did wrap
    assert r.energy_mj_per_inference == pytest.approx(EXPECTED_MJ, rel=1e-12)
    assert r.mean_power_mw == pytest.approx(BUSY_W * 1e3, rel=1e-9)
    assert r.duration_s == pytest.approx(20 * INFER_S)
    assert r.inferences == 20 and r.source == "measured" and r.idle_power_mw is None
    assert "RAPL package-0+package-1 energy_uj" in r.method and "intel-rapl:1" in r.method


def test_rapl_idle_subtraction(rapl):
    fake, infer, sleep = rapl
    r = RaplMeter(fake.root, clock=fake.clock, sleep=sleep).measure(infer, inferences=10, idle_s=0.2)
    assert r.idle_power_mw == pytest.approx(IDLE_W * 1e3)
    assert r.energy_mj_per_inference == pytest.approx(ABOVE_IDLE_MJ, rel=1e-9)
    assert r.mean_power_mw == pytest.approx((BUSY_W - IDLE_W) * 1e3, rel=1e-9)
    assert "minus idle 50 mW" in r.method


def test_rapl_uses_psys_only_without_package(tmp_path):
    fake = FakeRapl(tmp_path, {"intel-rapl:0": ("psys", 10, 2**32), "intel-rapl:0:0": ("core", 0, 2**32)})

    def infer():
        fake.add("intel-rapl:0", 2_500)
        fake.now += INFER_S

    r = RaplMeter(tmp_path, clock=fake.clock).measure(infer, inferences=4)
    assert r.energy_mj_per_inference == pytest.approx(EXPECTED_MJ)
    assert "RAPL psys" in r.method


def test_rapl_permission_denied_says_what_to_do(rapl, monkeypatch):
    fake, infer, _ = rapl
    denied = fake.root / "intel-rapl:1" / "energy_uj"
    denied.chmod(0)
    if os.geteuid() == 0:  # root reads anything: simulate the kernel's refusal
        real = pathlib.Path.read_text

        def read_text(self, *a, **k):
            if self == denied:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *a, **k)

        monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    meter = RaplMeter(fake.root, clock=fake.clock)
    assert meter.available() is False
    with pytest.raises(MeasurementError) as e:
        meter.measure(infer, inferences=1)
    msg = str(e.value)
    assert "permission denied" in msg and str(denied) in msg
    assert "5.10" in msg and "root" in msg and "chmod o+r" in msg


def test_rapl_no_zone_errors(tmp_path):
    missing = RaplMeter(tmp_path / "nope")
    assert missing.available() is False
    with pytest.raises(MeasurementError, match="does not exist"):
        missing.measure(lambda: None, inferences=1)
    FakeRapl(tmp_path, {"intel-rapl:0:0": ("core", 0, 2**32), "intel-rapl:1": ("dram", 0, 2**32)})
    meter = RaplMeter(tmp_path)
    assert meter.available() is False
    with pytest.raises(MeasurementError, match=r"given zones: intel-rapl:1 \(dram\)"):
        meter.zones()


def test_rapl_rejects_bad_arguments(rapl):
    fake, infer, _ = rapl
    meter = RaplMeter(fake.root, clock=fake.clock)
    with pytest.raises(MeasurementError, match="inferences as an integer >= 1; given 0"):
        meter.measure(infer, inferences=0)
    with pytest.raises(MeasurementError, match="idle_s"):
        meter.measure(infer, inferences=1, idle_s=-1.0)


# ------------------------------------------------------------------------------------------------ traces


@pytest.fixture
def styles(tmp_path):
    """The same square wave written as three exporters would: (path, load kwargs)."""
    t, p = square_wave()
    v = np.full_like(t, 3.3)
    i = p / v
    return {
        # Joulescope-like: '#time' header after a metadata line, SI units, a power column beside I and V.
        "joulescope": write_csv(tmp_path / "js.csv", "#time,current,voltage,power", [t, i, v, p],
                                preamble="# Joulescope export,sample rate 10000\n"),
        # bench logger: time in ms, current in mA, voltage in V (no power column).
        "bench": write_csv(tmp_path / "bench.csv", "Time (ms),Current (mA),Voltage (V)", [t * 1e3, i * 1e3, v]),
        # Otii-like: timestamp in s, current in µA, voltage in mV.
        "otii": write_csv(tmp_path / "otii.csv", "Timestamp (s),Main current (µA),Main voltage (mV)",
                          [t, i * 1e6, v * 1e3]),
        # suffix units: time_ms, power_mW
        "suffix": write_csv(tmp_path / "suffix.csv", "time_ms,power_mW", [t * 1e3, p * 1e3]),
    }


@pytest.mark.parametrize("style", ["joulescope", "bench", "otii", "suffix"])
def test_square_wave_energy_per_inference(styles, style):
    tr = load_trace(styles[style])
    assert tr.time_s[-1] == pytest.approx(0.9999)
    assert tr.power_w.max() == pytest.approx(BUSY_W) and tr.power_w.min() == pytest.approx(IDLE_W)
    r = energy_per_inference(tr, WINDOWS)
    assert r.energy_mj_per_inference == pytest.approx(EXPECTED_MJ, rel=0.01)
    assert r.inferences == 10 and r.duration_s == pytest.approx(10 * INFER_S)
    assert r.mean_power_mw == pytest.approx(BUSY_W * 1e3, rel=0.01)
    assert str(styles[style]) in r.method and "10 inference windows" in r.method


def test_derivation_names_the_columns(styles):
    assert load_trace(styles["joulescope"]).derivation == "power 'power'"
    assert load_trace(styles["otii"]).derivation == "current 'Main current (µA)' x voltage 'Main voltage (mV)'"


def test_current_only_with_constant_voltage_and_explicit_columns(tmp_path):
    t, p = square_wave()
    f = write_csv(tmp_path / "i.csv", "sample,clock,I", [np.arange(t.size), t * 1e3, p / 3.3 * 1e3])
    tr = load_trace(f, time_col="Clock", current_col="i", voltage_v=3.3, units={"time": "ms", "current": "mA"})
    assert "constant 3.3 V" in tr.derivation
    assert energy_per_inference(tr, WINDOWS).energy_mj_per_inference == pytest.approx(EXPECTED_MJ, rel=0.01)


def test_offset_and_idle_window(styles):
    tr = load_trace(styles["bench"])
    host = [(a - 0.1234, b - 0.1234) for a, b in WINDOWS]
    r = energy_per_inference(tr, host, offset_s=0.1234)
    assert r.energy_mj_per_inference == pytest.approx(EXPECTED_MJ, rel=0.01)
    r = energy_per_inference(tr, host, offset_s=0.1234, idle_window=(0.0, 0.05))
    assert r.idle_power_mw == pytest.approx(IDLE_W * 1e3)
    assert r.energy_mj_per_inference == pytest.approx(ABOVE_IDLE_MJ, rel=0.01)
    assert "minus idle 50 mW" in r.method


def test_windows_outside_the_trace_are_refused(styles):
    tr = load_trace(styles["joulescope"])
    with pytest.raises(MeasurementError) as e:
        energy_per_inference(tr, [(0.5, 0.51), (0.99, 1.2)])
    msg = str(e.value)
    assert "window 1" in msg and "offset_s" in msg and "align_offset" in msg and "js.csv" in msg
    with pytest.raises(MeasurementError, match="window 0 is"):
        energy_per_inference(tr, [(0.5, 0.5)])
    with pytest.raises(MeasurementError, match="at least one window"):
        energy_per_inference(tr, [])


def test_align_offset_recovers_a_known_offset():
    rng = np.random.default_rng(0)
    t, p = square_wave(2 * RATE_HZ)  # 2 s trace: idle after the run
    noisy = PowerTrace(time_s=t, power_w=p + rng.normal(0, 0.005, t.size))
    for offset in (0.1234, -0.05, 0.0):
        host = [(a - offset, b - offset) for a, b in WINDOWS]
        assert align_offset(noisy, host) == pytest.approx(offset, abs=2 / RATE_HZ)
    assert align_offset(noisy, [(a - 0.1234, b - 0.1234) for a, b in WINDOWS], max_lag_s=0.2) == pytest.approx(
        0.1234, abs=2 / RATE_HZ)
    with pytest.raises(MeasurementError, match="fit inside the trace"):
        align_offset(noisy, [(0.0, 5.0)])


# ------------------------------------------------------------------------------------------------ bad files


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(MeasurementError, match=r"nope\.csv.*missing"):
        load_trace(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(MeasurementError, match=r"empty\.csv.*empty"):
        load_trace(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("time,power\n0,1\n")
    with pytest.raises(MeasurementError, match=r"header\.csv: expected at least 2 samples .* given 1"):
        load_trace(tmp_path / "header.csv")


def test_non_numeric_cell_names_line_and_column(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("Time (s),Power (mW)\n0,50\n0.001,50\n0.002,oops\n")
    with pytest.raises(MeasurementError) as e:
        load_trace(f)
    msg = str(e.value)
    assert "bad.csv, line 4, column 'Power (mW)'" in msg and "given 'oops'" in msg
    f.write_text("Time (s),Power (mW)\n0,50\n0.001,nan\n")
    with pytest.raises(MeasurementError, match=r"line 3.*finite number; given 'nan'"):
        load_trace(f)
    f.write_text("Time (s),Power (mW)\n0,50\n0.001\n")
    with pytest.raises(MeasurementError, match="line 3: expected at least 2 cells"):
        load_trace(f)


def test_non_monotonic_time(tmp_path):
    f = tmp_path / "back.csv"
    f.write_text("t,p\n0,1\n1,1\n0.5,1\n")
    with pytest.raises(MeasurementError, match=r"back\.csv, sample 3 .* column 't': expected time strictly "
                                               r"increasing; given 0.5 after 1.0"):
        load_trace(f)


def test_missing_columns_list_what_was_seen(tmp_path):
    f = tmp_path / "cols.csv"
    f.write_text("foo,bar\n0,1\n1,2\n")
    with pytest.raises(MeasurementError, match=r"time column.*given columns 'foo', 'bar'.*time_col="):
        load_trace(f)
    f.write_text("time,volts\n0,1\n1,2\n")
    with pytest.raises(MeasurementError, match=r"no current column among 'time', 'volts'"):
        load_trace(f)
    f.write_text("time,current\n0,1\n1,2\n")
    with pytest.raises(MeasurementError, match=r"no voltage column.*voltage_v="):
        load_trace(f)
    f.write_text("time,pwr\n0,1\n1,2\n")
    with pytest.raises(MeasurementError, match=r"column named 'powr'.*Did you mean 'pwr'\?"):
        load_trace(f, power_col="powr")


def test_unknown_units(tmp_path):
    f = tmp_path / "units.csv"
    f.write_text("Time (min),Power (W)\n0,1\n1,2\n")
    with pytest.raises(MeasurementError, match=r"time unit among s, sec, ms, us, ns; given 'min' \(column 'Time"):
        load_trace(f)
    f.write_text("time,power\n0,1\n1,2\n")
    with pytest.raises(MeasurementError, match=r"units\['power'\] among"):
        load_trace(f, units={"power": "hp"})


# ------------------------------------------------------------------------------------------------ TraceMeter


class FakeClock:
    def __init__(self) -> None:
        self.now = 10.0  # host clock; the meter's trace starts at 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_trace_meter_records_windows_then_integrates_the_exported_trace(tmp_path):
    clock = FakeClock()
    meter = TraceMeter(clock=clock, sleep=clock.sleep)
    with pytest.raises(MeasurementError, match="none yet"):
        meter.finish(tmp_path / "x.csv")

    def infer():
        clock.now += INFER_S

    clock.now = 10.05
    windows = meter.record(infer, inferences=10, idle_s=0.1)
    assert len(windows) == 10 and meter.idle_window == pytest.approx((10.05, 10.15))
    # The meter saw the same run on its own clock, 10 s earlier, with idle before and after.
    t = np.arange(0, 4000) / RATE_HZ
    busy = np.any([(t >= a - 10.0 - 1e-9) & (t < b - 10.0 - 1e-9) for a, b in windows], axis=0)
    f = write_csv(tmp_path / "capture.csv", "time,power (mW)", [t, np.where(busy, BUSY_W, IDLE_W) * 1e3])
    r = meter.finish(f, offset_s=-10.0)
    assert r.energy_mj_per_inference == pytest.approx(ABOVE_IDLE_MJ, rel=0.01)
    assert r.idle_power_mw == pytest.approx(IDLE_W * 1e3, rel=0.01)  # the last sample ramps into inference 1
    estimated = meter.finish(f, offset_s=None)
    assert estimated.energy_mj_per_inference == pytest.approx(ABOVE_IDLE_MJ, rel=0.01)

    with pytest.raises(MeasurementError, match=r"TraceMeter\(trace='capture.csv'\)"):
        TraceMeter(clock=clock).measure(infer, inferences=1)
    streamed = TraceMeter(f, offset_s=-10.0, clock=clock, sleep=clock.sleep)
    assert streamed.available()
    clock.now = 10.05
    assert streamed.measure(infer, inferences=10, idle_s=0.1).energy_mj_per_inference == pytest.approx(
        ABOVE_IDLE_MJ, rel=0.01)
