"""The fit to published MLPerf Tiny rows: reproducible from the script, runtime versions, prediction paths and
the intervals they state."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from chipfit import create_target, load_contract
from chipfit.cli import app
from chipfit.errors import ContractError, TargetError
from chipfit.targets import fit as fitmod
from chipfit.targets.knowledge import (
    RuntimeNameError,
    efficiency,
    fit_tables,
    resolve_runtime,
    runtimes,
    split_runtime,
    version_table,
)


def test_shipped_fit_equals_what_the_script_produces():
    """knowledge/fitted.yaml is generated, never edited: `python -m chipfit.targets.fit` reproduces it."""
    assert fitmod.render() == fitmod.OUT_PATH.read_text(), "run: python -m chipfit.targets.fit"
    assert fitmod.main(["--check"]) == 0


def test_rows_read_from_the_published_csv():
    rows, excluded = fitmod.read_rows()
    cv = [r for r in rows if r.cv]
    assert {r.board for r in cv} == {"NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI-P", "NUCLEO-H7A3ZI-Q", "DISCO-F746NG"}
    assert sum(1 for r in cv if r.energy_uj) >= 40  # 71 energy rows, duplicates across rounds merged
    assert {(r.runtime, r.version) for r in cv} >= {("x-cube-ai", "7.1"), ("x-cube-ai", "10.2"),
                                                    ("plumerai", "2023.05"), ("tflm-cmsis-nn", "2.3.1"),
                                                    ("hale", "1.0.175"), ("microtvm-cmsis-nn", "e3a6cb6")}
    reasons = " ".join(why for _, why in excluded)
    assert "float model variant" in reasons and "benchmark sww" in reasons
    for r in cv:  # every version found is one the runtime catalog lists
        assert r.version in runtimes()[r.runtime].versions, (r.runtime, r.version)


def test_runtime_names_and_versions():
    assert split_runtime("x-cube-ai@10.2") == ("x-cube-ai", "10.2")
    assert resolve_runtime("x-cube-ai") == ("x-cube-ai", "10.2")  # bare = latest known
    assert resolve_runtime("plumerai@2023.05") == ("plumerai", "2023.05")
    with pytest.raises(RuntimeNameError, match=r"known version of x-cube-ai \(7.1, 7.3"):
        resolve_runtime("x-cube-ai@11.0")
    t = create_target("stm32h743.x-cube-ai@9.0")
    assert (t.runtime, t.runtime_version(), t.runtime_label()) == ("x-cube-ai", "9.0", "x-cube-ai@9.0")
    assert create_target("stm32h743").runtime_label() == "x-cube-ai@10.2"
    assert create_target("stm32l4r5", runtime="plumerai@r1.0").runtime_label() == "plumerai@r1.0"
    with pytest.raises(TargetError, match="known version"):
        create_target("stm32h743.x-cube-ai@6.0")
    table = version_table("x-cube-ai")
    assert [v["version"] for v in table][-1] == "10.2" and table[-1]["latest"]
    assert table[-1]["fitted_on"] == ["NUCLEO-L4R5ZI-P"]


def test_versions_in_target_files_and_contracts(tmp_path):
    p = tmp_path / "board.yaml"
    p.write_text("name: my-m4\ncore: cortex-m4\nclock_mhz: 80\nsram_kb: 256\nflash_kb: 1024\n"
                 "runtime: x-cube-ai@8.1\n")
    t = create_target(p)
    assert t.runtime_label() == "x-cube-ai@8.1"
    p.write_text(p.read_text().replace("@8.1", "@8.9"))
    with pytest.raises(TargetError, match=r"8\.9"):
        create_target(p)
    c = load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": "stm32l4r5",
                       "runtime": "x-cube-ai@7.3"})
    assert c.get_target().runtime_label() == "x-cube-ai@7.3"
    with pytest.raises(ContractError, match="runtime"):
        load_contract({"name": "x", "task": {"data": {"source": "builtin"}}, "target": "stm32l4r5",
                       "runtime": "x-cube-ai@1.0"})


@pytest.mark.parametrize(("core", "runtime", "board", "path"), [
    ("cortex-m4", "x-cube-ai@9.0", "stm32l4r5", "fitted board"),
    ("cortex-m7", "plumerai", "stm32h743", "same core, other board"),
    ("cortex-m7", "x-cube-ai@10.2", "stm32h743", "analogous core"),
    ("cortex-m33", "x-cube-ai", None, "analogous core"),
    ("cortex-m55", "plumerai", None, "analogous core"),
    ("cortex-m4", "tflm", None, "analytical"),
])
def test_prediction_paths_state_an_interval(core, runtime, board, path):
    e = efficiency(core, runtime, board=board, clock_mhz=create_target(board).clock_mhz if board else None)
    assert e.path == path, e.source
    lo, hi = e.interval
    assert lo < 1.0 < hi
    assert e.energy_interval is not None


def test_version_changes_the_prediction():
    """X-CUBE-AI 7.1 -> 9.0 on the L4R5 became much faster on vww: the versions are fitted apart."""
    old = efficiency("cortex-m4", "x-cube-ai@7.1", board="stm32l4r5", clock_mhz=120)
    new = efficiency("cortex-m4", "x-cube-ai@9.0", board="stm32l4r5", clock_mhz=120)
    assert new.macs_per_cycle["depthwise"] > 1.5 * old.macs_per_cycle["depthwise"]


def test_cross_validation_kinds_and_residuals():
    t = fit_tables()
    for path in ("fitted board", "same core, other board", "analogous core", "*"):
        assert t.latency_residuals[path][2] >= 6, path
    assert t.dual_issue_gain is not None and t.dual_issue_gain > 1  # an M7 needs fewer cycles than an M4
    assert ("NUCLEO-H7A3ZI-Q", "x-cube-ai", "8.0") in t.power


def test_profile_json_states_interval_and_path():
    res = CliRunner().invoke(app, ["profile", "resnet8", "--target", "stm32h743.x-cube-ai@10.2", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    lo, hi = d["latency_interval_ms"]
    assert lo < d["latency_ms"] < hi
    assert d["runtime"] == "x-cube-ai@10.2" and d["predicted_by"] == "analogous core"
    assert d["energy_interval_mj"][0] < d["energy_mj"] < d["energy_interval_mj"][1]


def test_devices_show_lists_versions():
    res = CliRunner().invoke(app, ["devices", "show", "stm32l4r5", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    xc = d["efficiency"]["x-cube-ai"]
    assert xc["version"] == "10.2" and xc["predicted_by"] == "fitted board"
    assert [v["version"] for v in xc["versions"]] == ["7.1", "7.3", "8.0", "8.1", "9.0", "10.2"]


def test_cycles_do_not_depend_on_the_clock_on_published_boards():
    """One workload published at two clocks on both STM32 families takes the same cycles: latency ~ 1 / clock."""
    import yaml

    inv = yaml.safe_load(fitmod.OUT_PATH.read_text())["clock_invariance"]
    assert len(inv) >= 2
    for key, v in inv.items():
        assert abs(v["cycles_ratio"] - 1) < 0.02, key


def test_devices_show_names_the_path_profile_takes():
    """On a board whose published TFLM + CMSIS-NN rows fit a CPI, `devices show` says instructions x CPI is the
    path, with the same CPI that `profile` multiplies by, and the MAC/cycle row says it is not used."""
    show = json.loads(CliRunner().invoke(app, ["devices", "show", "stm32l4r5", "--json"]).output)
    cpi = show["efficiency"]["tflm-cmsis-nn"]["cpi"]
    assert set(cpi["per_model"]) == {"ad", "ic", "kws", "vww"}
    assert "cpi" not in show["efficiency"]["x-cube-ai"]
    prof = json.loads(CliRunner().invoke(app, ["profile", "resnet8", "--target", "stm32l4r5", "--runtime",
                                               "tflm-cmsis-nn", "--json"]).output)
    assert prof["predicted_by"] == "instructions x CPI, fitted board"
    assert f"x {cpi['cpi']:.3g} cycles per instruction" in prof["efficiency_source"]
    table = CliRunner().invoke(app, ["devices", "show", "stm32l4r5"], terminal_width=250).output
    assert "cycles/instruction" in table and "not used for this board" in table


def test_held_out_board_power_never_comes_from_its_own_rows():
    """Leave-one-board-out: the held-out board's power is predicted by its profile's power model or by other
    boards' published power, never by its own energy rows."""
    rows, _ = fitmod.read_rows()
    preds = [p for p in fitmod.cross_validate(rows, ("lobo",)) if p.energy_uj is not None]
    assert len(preds) >= 40
    assert {p.power_path for p in preds} <= {"power model", "same core, other board", "other core"}
    for p in preds:  # energy = predicted power x predicted latency
        assert p.power_log_err is not None and p.energy_log_err is not None
        assert p.energy_log_err == pytest.approx(p.log_err + p.power_log_err)


def test_energy_interval_combines_latency_and_power():
    from chipfit.targets.knowledge import UNSEEN_POWER, energy_interval

    t = fit_tables()
    assert {"fitted board", "power model", UNSEEN_POWER} <= set(t.power_residuals)
    lat = (0.8, 1.25)
    lo, hi = energy_interval(lat, "power model")
    assert lo < 0.8 and hi > 1.25 and lo * hi == pytest.approx(1.0)
    # a board whose own power was published states a narrower energy interval than one without
    assert energy_interval(lat, "fitted board")[1] < energy_interval(lat, "same core, other board")[1]
    import yaml

    check = yaml.safe_load(fitmod.OUT_PATH.read_text())["power_model_check"]
    assert check["NUCLEO-L4R5ZI"]["model_mw"] == pytest.approx(100e-3 * 120 * 3.3)
