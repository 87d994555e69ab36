"""Every numbered citation ("[16] nRF52840 PS") in the shipped device profiles and knowledge files resolves to an
entry of the shipped references file; no package file cites a file that is not in the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chipfit.cli import app
from chipfit.targets import create_target, list_targets
from chipfit.targets.references import CITATION, cited, references, references_for, resolve

PKG = Path(__file__).resolve().parents[2] / "chipfit"
CITING = sorted([*(PKG / "targets" / "profiles").glob("*.yaml"), *(PKG / "targets" / "knowledge").glob("*.yaml"),
                 *(PKG / "targets" / "knowledge").glob("*.csv")])


def _citations(path: Path) -> set[int]:
    text = path.read_text(encoding="utf-8")
    if path.name == "references.yaml":
        return set()
    return {int(n) for n in CITATION.findall(text)}


@pytest.mark.parametrize("path", CITING, ids=lambda p: p.name)
def test_every_numbered_citation_resolves_to_a_reference(path):
    refs = references()
    missing = sorted(_citations(path) - set(refs))
    assert not missing, f"{path.name} cites {missing}, which chipfit/targets/knowledge/references.yaml lacks"


def test_every_reference_has_a_title_a_url_and_what_it_supports():
    refs = references()
    assert len(refs) >= 40
    for n, r in refs.items():
        assert r.number == n and r.title.strip() and r.supports.strip(), r
        assert re.match(r"^https?://[^\s]+$", r.url), r


def test_profiles_cite_sources_at_all():
    """The citations are real: all but a handful of numbers are cited somewhere, and every built-in board cites."""
    used = set().union(*(_citations(p) for p in CITING))
    assert len(used) >= 30
    for name in list_targets():
        if name != "host":
            assert references_for(create_target(name)), name


def test_no_package_file_cites_a_file_outside_the_repository():
    offenders = []
    for p in PKG.rglob("*"):
        if p.is_file() and p.suffix in (".py", ".yaml", ".yml", ".csv", ".md") and "__pycache__" not in p.parts:
            text = p.read_text(encoding="utf-8", errors="replace")
            if "STACK-NOTES" in text or "device-facts.md" in text:
                offenders.append(str(p.relative_to(PKG)))
    assert not offenders


def test_resolve_names_the_file_for_a_missing_number():
    from chipfit.errors import ChipfitError

    assert [r.number for r in resolve(cited("[16] PS", "[1][2]"))] == [1, 2, 16]
    with pytest.raises(ChipfitError, match=r"references\.yaml"):
        resolve([999])
    assert resolve([16, 999], strict=False)[0].number == 16


def test_a_users_target_file_numbers_its_own_sources(tmp_path):
    """'[1]' in a user's board file is the user's source, not chipfit's entry 1."""
    f = tmp_path / "board.yaml"
    f.write_text("name: myboard\ncore: cortex-m4\nclock_mhz: {value: 80, source: '[1] my datasheet'}\n"
                 "sram_kb: 128\nflash_kb: 512\nruntime: tflm-cmsis-nn\n")
    from chipfit.targets.knowledge import efficiency

    t = create_target(f)
    from_knowledge = cited(*(efficiency(t.core, r).source for r in t.runtimes))
    assert [r.number for r in references_for(t)] == from_knowledge  # the file's "[1]" is not chipfit's [1]


def test_cli_devices_show_sources_lists_the_cited_references():
    r = CliRunner().invoke(app, ["devices", "show", "nrf52840", "--sources"])
    assert r.exit_code == 0, r.output
    assert "[16]" in r.stdout and "Nordic nRF52840 Product Specification" in r.stdout
    assert references()[16].url in r.stdout
    plain = CliRunner().invoke(app, ["devices", "show", "nrf52840"])
    assert plain.exit_code == 0
    hint = re.search(r"'chipfit (devices show nrf52840 --sources)'", plain.stdout)  # says how to list them
    followed = CliRunner().invoke(app, hint.group(1).split())
    assert followed.exit_code == 0 and followed.stdout == r.stdout
    js = json.loads(CliRunner().invoke(app, ["devices", "show", "nrf52840", "--json"]).stdout)
    assert 16 in [ref["number"] for ref in js["references"]]
    bad = CliRunner().invoke(app, ["devices", "--sources"])
    assert bad.exit_code == 2 and "devices show NAME --sources" in bad.output
