"""The package's layering is enforced: `lint-imports` (run by `make test`) keeps the contracts in pyproject.toml,
and breaks when a cycle or a forbidden import is planted in a copy of the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "chipfit", tmp_path / "chipfit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_layering(copy: Path) -> None:
    res = _lint(copy)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 kept, 0 broken" in res.stdout


def test_a_planted_cycle_breaks_the_build(copy: Path) -> None:
    budgets = copy / "chipfit" / "pricing.py"
    budgets.write_text(budgets.read_text() + "\n\ndef _planted() -> None:\n    import chipfit.search.loop  # noqa\n")
    res = _lint(copy)
    assert res.returncode != 0
    assert "No import cycles" in res.stdout and "BROKEN" in res.stdout


def test_torch_in_the_device_runtime_breaks_the_build(copy: Path) -> None:
    p = copy / "chipfit" / "runtime" / "drift.py"
    p.write_text(p.read_text() + "\n\ndef _planted() -> None:\n    import torch  # noqa\n")
    res = _lint(copy)
    assert res.returncode != 0 and "device runtime" in res.stdout


def test_importing_run_below_the_cli_breaks_the_build(copy: Path) -> None:
    p = copy / "chipfit" / "export" / "base.py"
    p.write_text(p.read_text() + "\n\ndef _planted() -> None:\n    import chipfit.run  # noqa\n")
    res = _lint(copy)
    assert res.returncode != 0 and "only layer above Run" in res.stdout
