"""The README walk-through: every ```bash and ```python block of README.md runs as written (with the small
overrides listed here: a tiny search, the session's finished run for ``runs/digits``), or is skipped with a
stated reason. A block that no rule covers fails, so a new README example cannot rot untested."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.M | re.S)

# The first rule whose key occurs in a block applies: ("skip", reason) or ("run", how).
RULES: list[tuple[str, str, str]] = [
    ("make demo", "skip", "bootstraps .venv and runs the demo; `make test` is this suite itself"),
    ("--backend ray", "skip", "needs a Ray cluster (ray start on several nodes)"),
    ("make farm", "skip", "installs with apt-get as root and needs a board on /dev/ttyACM0; tests/firmware/ runs "
     "each of these commands against QEMU, the serial ones through a pseudo-terminal"),
    ("fetch_data.py --verify", "run", "shared-data"),
    ("fetch_data.py", "skip", "downloads from the internet, which tests and CI never use"),
    ("chipfit measure best/model.int8.onnx", "run", "in-run-dir"),
    ("chipfit check examples/digits.yaml", "run", "tiny-cli"),
    ("p = Predictor(\"runs/digits\")", "run", "finished-run"),
    ("chipfit.create_run(contract", "run", "tiny-search"),
]
# A tiny search instead of the contract's (seconds, not minutes), and a bar a 1-epoch model clears.
TINY_SEARCH = {"trials": 3, "epochs": 1, "rung_epochs": 1, "time_budget_s": None}


def readme_blocks() -> list[tuple[str, str, int]]:
    text = (REPO / "README.md").read_text()
    return [(m.group(1), m.group(2), text[: m.start()].count("\n") + 1) for m in FENCE.finditer(text)
            if m.group(1) in ("bash", "python")]


def rule_for(code: str) -> tuple[str, str]:
    for key, action, how in RULES:
        if key in code:
            return action, how
    return "uncovered", ""


BLOCKS = readme_blocks()


def test_every_runnable_readme_block_is_covered():
    assert len(BLOCKS) >= 6
    uncovered = [f"README.md:{line} ({lang})" for lang, code, line in BLOCKS if rule_for(code)[0] == "uncovered"]
    assert not uncovered, f"add a rule to RULES in {__file__} for {uncovered}"


def _bash(code: str, cwd: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "CHIPFIT_CACHE_DIR": str(tmp_path / "cache")}  # a calibration here must not change other tests'
    code = code.replace("python scripts/", f"{sys.executable} {REPO / 'scripts'}/")
    # 3 probes, and --allow-busy: this suite runs two workers side by side, so the machine can look busy to the
    # calibration's check (the refusal itself is tested in tests/measure/test_busy.py)
    code = code.replace("chipfit calibrate --target host", "chipfit calibrate --target host --probes 3 --allow-busy")
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=1800)
    assert res.returncode == 0, f"{code}\n--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-3000:]}"


def _python(code: str, cwd: Path, monkeypatch: pytest.MonkeyPatch, **names: object) -> dict:
    monkeypatch.chdir(cwd)
    namespace: dict = {"__name__": "__readme__", **names}
    exec(compile(code, "README.md", "exec"), namespace)  # the README's own example
    return namespace


def _tiny(contract: object) -> object:
    search = contract.search.model_copy(update=TINY_SEARCH)
    budgets = contract.budgets.model_copy(update={"accuracy": 0.5})
    return contract.model_copy(update={"search": search, "budgets": budgets})


SLOW = ("tiny-search", "tiny-cli", "in-run-dir")


def _params() -> list:
    return [pytest.param(lang, code, line, id=f"README.md:{line}",
                         marks=[pytest.mark.slow] if rule_for(code)[1] in SLOW else [])
            for lang, code, line in BLOCKS]


@pytest.mark.parametrize(("lang", "code", "line"), _params())
def test_readme_block_runs_as_written(lang, code, line, request, tmp_path, monkeypatch):
    action, how = rule_for(code)
    if action != "run":
        pytest.skip(how or "not covered (see test_every_runnable_readme_block_is_covered)")
    if how == "shared-data":
        request.getfixturevalue("shared_data")  # skips with a reason when ../shared/data is absent
        _bash(code, REPO, tmp_path)
    elif how == "in-run-dir":
        run_dir = request.getfixturevalue("finished_run")[0]
        _bash(code, run_dir, tmp_path)
    elif how == "finished-run":
        run_dir = request.getfixturevalue("finished_run")[0]
        _python(code.replace('"runs/digits"', repr(str(run_dir))), tmp_path, monkeypatch)
    elif how == "tiny-cli":  # the same commands with a smaller search (4 trials, 6 epochs), in a scratch folder
        code = code.replace("examples/", f"{REPO / 'examples'}/").replace("--trials 8 --time-budget 120",
                                                                         "--trials 4 --epochs 6")
        _bash(code, tmp_path, tmp_path)
    elif how == "tiny-search":
        code = code.replace('"examples/digits.yaml"', repr(str(REPO / "examples" / "digits.yaml")))
        lines = []
        for text in code.splitlines():
            lines.append(text)
            if text.startswith("contract = "):
                lines.append("contract = _tiny(contract)  # test override: a tiny search")
        p = _python("\n".join(lines), tmp_path, monkeypatch, _tiny=_tiny)["p"]
        assert (tmp_path / "runs" / "digits-api" / "best" / "manifest.json").is_file()
        assert p.input.range == (0.0, 16.0)
    else:  # pragma: no cover
        pytest.fail(f"unknown way to run a block: {how}")
