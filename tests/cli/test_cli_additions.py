"""What a new user reaches for first: --version, shell completion, device search by part of a name with correct
plurals, changing a contract from Python, and `chipfit run --trials/--time-budget/--epochs` recorded in the run;
a run says why it stopped, announces each finishing step and ends with the paths of report.html and best/."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import chipfit
from chipfit import load_contract
from chipfit.cli import app
from chipfit.errors import ContractError

REPO = Path(__file__).resolve().parents[2]


def test_version():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"chipfit {chipfit.__version__}"


# Typer detects the user's shell from the process tree; its own switch names the shell instead, for tests
NAMED_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


def test_completion_options_are_offered():
    r = CliRunner().invoke(app, ["--help"], prog_name="chipfit")
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout and "--version" in r.stdout


def _chipfit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The CLI in a fresh process (Typer reads the switch when the app is built), named as installed."""
    code = "from chipfit.cli import app; app(prog_name='chipfit')"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, cwd=REPO)


def test_show_completion_prints_a_bash_script():
    r = _chipfit("--show-completion", "bash", env=NAMED_SHELL)
    assert r.returncode == 0, r.stderr
    assert "_CHIPFIT_COMPLETE" in r.stdout and "complete" in r.stdout


def test_install_completion_writes_to_the_users_shell_config(tmp_path):
    r = _chipfit("--install-completion", "bash", env={**NAMED_SHELL, "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    script = tmp_path / ".bash_completions" / "chipfit.sh"
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    assert "_CHIPFIT_COMPLETE" in script.read_text()


def test_completion_completes_commands():
    """What the shell asks when the user presses TAB after 'chipfit dev'."""
    env = {"_CHIPFIT_COMPLETE": "complete_bash", "COMP_WORDS": "chipfit dev", "COMP_CWORD": "1"}
    r = CliRunner().invoke(app, [], prog_name="chipfit", env=env)
    assert "devices" in r.stdout


def test_devices_by_part_of_a_name_and_by_glob_with_plurals():
    r = CliRunner().invoke(app, ["devices", "nrf"])
    assert r.exit_code == 0 and "nrf52840" in r.stdout and r.stdout.split()[:2] == ["1", "device"]
    r = CliRunner().invoke(app, ["devices", "stm32"])
    assert r.exit_code == 0 and "4 devices" in r.stdout
    for name in ("stm32f746", "stm32h743", "stm32h7a3", "stm32l4r5"):
        assert name in r.stdout
    r = CliRunner().invoke(app, ["devices", "STM32H7", "--json"])
    assert [d["name"] for d in yaml.safe_load(r.stdout)] == ["stm32h743", "stm32h7a3"]
    r = CliRunner().invoke(app, ["devices", "rpi?", "--json"])
    assert [d["name"] for d in yaml.safe_load(r.stdout)] == ["rpi4", "rpi5"]
    assert chipfit.list_targets("jetson") == ["jetson-nano", "jetson-orin-nano"]


def test_contract_with_updates_merges_and_validates_like_the_yaml():
    c = load_contract(REPO / "examples" / "digits.yaml")
    small = c.with_updates({"search": {"trials": 8, "time_budget_s": 120}, "budgets": {"ram_kb": 32}})
    assert (small.search.trials, small.search.time_budget_s, small.search.epochs) == (8, 120.0, c.search.epochs)
    assert small.budgets.ram_kb == 32 and small.budgets.accuracy == c.budgets.accuracy  # deep merge
    assert small.get_target() is c.get_target() and small.base_dir == c.base_dir
    assert c.search.trials == 24  # the original is unchanged (frozen)
    with pytest.raises(ContractError) as e:
        c.with_updates({"search": {"trials": 0, "epochs": -1}, "target": "stm32h734"})
    text = str(e.value)
    assert "search.trials" in text and "search.epochs" in text and "Did you mean 'stm32h743'" in text


def test_with_updates_keeps_paths_absolute(tmp_path):
    import numpy as np

    np.savez(tmp_path / "d.npz", x=np.zeros((40, 8), np.float32), y=np.arange(40) % 2)
    (tmp_path / "c.yaml").write_text(
        "name: arr\ntask:\n  data: {source: arrays, path: d.npz}\n  input: {modality: series, shape: [8]}\n"
        "target: stm32h743\nbudgets: {ram_kb: 64}\n")
    c = load_contract(tmp_path / "c.yaml")
    u = c.with_updates({"search": {"trials": 2}})
    assert Path(u.task.data.path) == tmp_path / "d.npz" and Path(u.task.data.path).is_absolute()


@pytest.mark.parametrize("args, key", [(["--trials", "0"], "search.trials"), (["--epochs", "0"], "search.epochs"),
                                       (["--time-budget", "-5"], "search.time_budget_s")])
def test_run_overrides_are_validated_like_the_yaml(tmp_path, digits_contract, args, key):
    p = digits_contract(tmp_path)
    r = CliRunner().invoke(app, ["run", str(p), "--out", str(tmp_path / "o"), *args])
    assert r.exit_code == 2 and key in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()  # refused before a run directory is made


@pytest.mark.slow
def test_time_budget_stop_is_obvious_and_its_hint_resumes_with_overrides_recorded(tmp_path, digits_contract):
    """A run stopped by its time budget says so and how to search on; following the hint (with --trials and
    --epochs) records the overrides in the run's contract.yaml, shows each finishing step, and ends with the
    paths of report.html and best/."""
    p = digits_contract(tmp_path, accuracy=0.2, rung_epochs=1)
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["run", str(p), "--out", str(out), "--trials", "2", "--epochs", "1",
                                 "--time-budget", "0.001"])
    assert r.exit_code == 3, r.output
    assert "search stopped: time budget of 0.001 s used (0 of 2 trials recorded)" in r.stdout
    hint = re.search(r"'(chipfit run [^']*--time-budget [^']*)'", r.stdout)
    assert hint, r.stdout
    cmd = shlex.split(hint.group(1))[1:]
    assert cmd == ["run", str(out), "--resume", "--time-budget", "60"]
    # starting it again names the command that resumes it; that works (and stops on its budget again)
    again = CliRunner().invoke(app, ["run", str(p), "--out", str(out)])
    assert again.exit_code == 2
    resume = shlex.split(re.search(r"'(chipfit run [^']+ --resume)'", again.output).group(1))[1:]
    r2 = CliRunner().invoke(app, resume)
    assert r2.exit_code == 3 and "search stopped: time budget of 0.001 s used" in r2.stdout, r2.output
    r = CliRunner().invoke(app, cmd)  # the hint, as printed
    assert r.exit_code in (0, 3), r.output
    recorded = yaml.safe_load((out / "contract.yaml").read_text())["search"]
    assert (recorded["trials"], recorded["epochs"], recorded["time_budget_s"]) == (2, 1, 60)
    assert re.search(r"search stopped: (all 2 trials recorded|time budget of 60 s used)", r.stdout), r.stdout
    # every finishing step was announced, in order, and the run ends with where to look
    steps = [line for line in r.stderr.splitlines() if line.startswith("finishing: ")]
    assert steps[0].startswith("finishing: evaluating the int8 model on the test split")
    assert any("robustness" in s for s in steps) and any(s.startswith("finishing: exporting onnx") for s in steps)
    assert steps[-1].startswith("finishing: writing report.html")
    tail = r.stdout.strip().splitlines()[-2:]
    assert tail == [f"report: {out / 'report.html'}", f"model:  {out / 'best'}"]
    assert (out / "report.html").is_file() and (out / "best" / "model.int8.onnx").is_file()


@pytest.mark.parametrize("stopped, expected, hint", [
    ("all 24 trials recorded", "search stopped: all 24 trials recorded", False),
    ("time budget of 240 s used", "search stopped: time budget of 240 s used (9 of 24 trials recorded)", True),
    ("search space exhausted: the sampler keeps proposing recorded configs and 500 random draws found none unseen",
     "search stopped: search space exhausted: the sampler keeps proposing recorded configs and 500 random draws "
     "found none unseen (9 of 24 trials recorded)", False),
])
def test_why_the_search_stopped_is_a_line_of_its_own(capsys, stopped, expected, hint):
    from types import SimpleNamespace

    from chipfit.cli import _print_stopped

    run = SimpleNamespace(dir=Path("runs/x"), contract=load_contract(REPO / "examples" / "digits.yaml"))
    report = SimpleNamespace(stopped=stopped, counts={"INFEASIBLE": 3, "PRUNED": 1, "FAILED": 0, "COMPLETE": 5})
    _print_stopped(report, run)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == expected
    assert (len(lines) == 2 and "'chipfit run runs/x --resume --time-budget 480'" in lines[1]) == hint
