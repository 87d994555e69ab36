"""Shared fixtures. Data from ../shared/data is read only through ``shared_data`` (skips when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Keep the tests off the user's cache: a calibration made by `chipfit calibrate` must not change them."""
    import tempfile

    os.environ["CHIPFIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="chipfit-test-cache-")


def _shared_root() -> Path:
    env = os.environ.get("CHIPFIT_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared datasets folder; tests using it skip with a reason when it is absent."""
    root = _shared_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set CHIPFIT_SHARED_DATA to its path to run this test)")
    return root


@pytest.fixture(scope="session")
def mlperf_models(shared_data: Path) -> Path:
    root = shared_data / "mlperf_tiny_models"
    if not root.is_dir():
        pytest.skip(f"MLPerf Tiny models not found under {shared_data}")
    return root


@pytest.fixture
def digits_contract():
    """Factory: write a copy of examples/digits.yaml with a smaller search (and accuracy budget) into a folder."""
    import yaml

    def write(folder: Path, *, accuracy: float = 0.5, name: str = "digits-small.yaml", **search: object) -> Path:
        doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
        doc["search"].update(search)
        doc["budgets"]["accuracy"] = accuracy
        path = folder / name
        path.write_text(yaml.safe_dump(doc))
        return path

    return write


# no time budget: the run stops on its trials (an event), however busy the machine
FINISHED_SEARCH = {"trials": 8, "epochs": 6, "rung_epochs": 2, "time_budget_s": None}


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One finished `chipfit run` of the embedded default (small search), shared by every integration test that
    only reads a finished run: ``(run_dir, report as printed by --json)``."""
    import json

    import yaml
    from typer.testing import CliRunner

    from chipfit.cli import app

    tmp = tmp_path_factory.mktemp("finished-run")
    doc = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    doc["search"].update(FINISHED_SEARCH)
    doc["budgets"]["accuracy"] = 0.5
    (tmp / "digits-small.yaml").write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["run", str(tmp / "digits-small.yaml"), "--out", str(tmp / "out"), "--json"])
    assert res.exit_code == 0, res.output
    return tmp / "out", json.loads(res.stdout)
