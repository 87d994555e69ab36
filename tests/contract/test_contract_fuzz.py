"""Property tests of the contract loader: any input gives a Contract or a ContractError, never anything else.

Bugs that fuzzing found are pinned by regression tests at the end.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from chipfit import load_contract
from chipfit.cli import app
from chipfit.contract.schema import Contract
from chipfit.errors import ContractError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

VALID: dict[str, Any] = {
    "name": "digits-l4r5",
    "description": "fuzz base",
    "task": {"kind": "classification", "data": {"source": "builtin", "name": "digits"},
             "input": {"modality": "image", "shape": [8, 8, 1]}, "classes": 10},
    "target": "stm32l4r5",
    "runtime": "tflm-cmsis-nn",
    "budgets": {"latency_ms": {"max": 5, "percentile": 90}, "ram_kb": 64, "flash_kb": 256, "accuracy": 0.9,
                "field_accuracy": {"min": 0.8, "over": "worst"}},
    "duty_cycle": {"inferences_per_second": 1, "battery_mah": 1000, "battery_volts": 3.0, "min_battery_days": 365},
    "field": [{"name": "gaussian_noise", "severity": 0.1}, {"name": "brightness", "range": [0.6, 1.4]}],
    "search": {"trials": 24, "time_budget_s": 240, "seed": 0, "backend": "local", "workers": 1},
}

def _outcome(source: str | Path | dict[str, Any]) -> Contract | ContractError:
    """Load ``source``; fail on any exception other than ContractError; check every Problem's fields.
    """
    try:
        return load_contract(source)
    except ContractError as exc:
        assert exc.problems, "ContractError without problems"
        for p in exc.problems:
            assert isinstance(p.path, str) and isinstance(p.expected, str) and isinstance(p.given, str)
            assert p.path, p
            assert p.expected.strip(), p
            assert p.given.strip(), p
            assert p.line is None or (isinstance(p.line, int) and p.line >= 1), p
            assert p.format()
        return exc


def test_valid_base_loads() -> None:
    c = load_contract(yaml.safe_dump(VALID, sort_keys=False))
    assert isinstance(c, Contract) and c.name == "digits-l4r5"


# --- (a) arbitrary text ------------------------------------------------------------------------------


@SETTINGS
@given(text=st.text(max_size=200))
def test_arbitrary_text_as_yaml(text: str) -> None:
    # load_contract reads a str as YAML text only when it has a newline or ':' (and no .yaml suffix)
    source = text if ("\n" in text or ":" in text) and not text.endswith((".yaml", ".yml")) else "x: " + text + "\n"
    _outcome(source)


@SETTINGS
@given(text=st.text(max_size=200))
def test_arbitrary_text_as_document(text: str) -> None:
    """The text as a whole YAML document (a leading newline forces the YAML-text reading)."""
    _outcome("\n" + text if not text.endswith((".yaml", ".yml")) else "\n" + text + "\n")


@SETTINGS
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    _outcome(path)


@SETTINGS
@given(line=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r:/"), max_size=40))
def test_yaml_lines_appended_to_valid_contract(line: str) -> None:
    """One arbitrary line after a valid contract (still a mapping document most of the time)."""
    _outcome(yaml.safe_dump(VALID, sort_keys=False) + line + ": 1\n")


# --- (b) structured mutations of a valid contract ------------------------------------------------------

_keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
            | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
            | st.sampled_from(["builtin", "arrays", "image-folder", "audio-folder", "audio", "image", "series",
                               "stm32h743", "rp2040", "tensorrt", "tflm", "ray", "local", "babble", "d.npz",
                               "board.yaml", "", "0", "-1", "1e9"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_keys | st.sampled_from(sorted(VALID)), inner, max_size=3), max_leaves=8)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def mutated_contracts(draw: st.DrawFn) -> Any:
    doc: Any = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["drop", "replace", "add"]))
        if not path:  # the root: replace it, or add a key to it
            if op == "replace":
                doc = draw(_values)
                continue
            op = "add"
        if op == "add":
            node = doc
            for part in path:
                node = node[part]
            if isinstance(node, dict):
                node[draw(_keys | st.sampled_from(["lattency", "budget", "base_dir", "percentile", "path"]))] = \
                    draw(_values)
            elif isinstance(node, list):
                node.append(draw(_values))
            elif not path:
                doc = draw(_values)
            else:
                _parent(doc, path)[path[-1]] = draw(_values)
        elif op == "drop":
            parent = _parent(doc, path)
            del parent[path[-1]]
        else:
            _parent(doc, path)[path[-1]] = draw(_values)
    return doc


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@SETTINGS
@given(doc=mutated_contracts())
def test_mutated_contract_text(doc: Any) -> None:
    text = _dump(doc)
    result = _outcome("\n" + text)
    if isinstance(result, Contract):  # a valid outcome must also be a usable one
        assert result.name and result.task.data.source


@SETTINGS
@given(doc=mutated_contracts())
def test_mutated_contract_mapping(doc: Any) -> None:
    """The same mutations handed over as a mapping (no YAML, so no lines)."""
    if isinstance(doc, dict):
        _outcome(doc)


@SETTINGS
@given(doc=mutated_contracts())
def test_mutated_contract_file(tmp_path: Path, doc: Any) -> None:
    (tmp_path / "d.npz").write_bytes(b"")
    path = tmp_path / "contract.yaml"
    path.write_text(_dump(doc), encoding="utf-8")
    result = _outcome(path)
    if isinstance(result, ContractError):
        assert all(p.file == str(path) for p in result.problems), result.problems


# --- the CLI on a handful of fuzzed files --------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=mutated_contracts())
def test_cli_on_fuzzed_files(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "contract.yaml"
    path.write_text(_dump(doc), encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(path), "--samples", "2"])
    text = result.output + (_stderr(result) or "")
    assert result.exit_code in (0, 2, 3), (result.exit_code, text, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in text
    if result.exit_code == 2:
        assert "expected" in text and "given" in text


def _stderr(result: Any) -> str:
    try:
        return getattr(result, "stderr", "") or ""
    except ValueError:
        return ""


def test_float_specials_are_reported_not_raised() -> None:
    doc = copy.deepcopy(VALID)
    doc["budgets"]["ram_kb"] = math.nan
    doc["search"]["trials"] = math.inf
    err = _outcome("\n" + _dump(doc))
    assert isinstance(err, ContractError)
    assert {p.path for p in err.problems} >= {"budgets.ram_kb", "search.trials"}


# --- bugs found by fuzzing (fixed; kept as regression tests) -----------------------------------------------------

_BASE = "name: demo\ntask: {data: {source: builtin}}\ntarget: stm32l4r5\n"


def test_overlong_target_file_name() -> None:
    _outcome(_BASE.replace("stm32l4r5", "a" * 300 + ".yaml"))


def test_overlong_data_path() -> None:
    _outcome("name: demo\ntask:\n  data: {source: arrays, path: " + "a" * 300 + ".npz}\n"
             "  input: {modality: image, shape: [8]}\ntarget: stm32l4r5\n")


def test_overlong_contract_path_library() -> None:
    _outcome("a" * 300)


def test_overlong_contract_path_cli() -> None:
    result = CliRunner().invoke(app, ["check", "a" * 300])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("tail", [
    pytest.param("field: &a [*a]\n", id="list"),
    pytest.param("description: &a {b: *a}\n", id="mapping"),
])
def test_recursive_alias(tail: str) -> None:
    _outcome(_BASE + tail)


@pytest.mark.parametrize("key", ["1", "on", "~", "2020-01-01"])
def test_non_string_key_problem_is_located(key: str) -> None:
    with pytest.raises(ContractError) as info:
        load_contract(_BASE + f"{key}: 2\n")
    (p,) = info.value.problems
    assert p.path and p.line == 4, p


def test_mapping_problem_keeps_key_path() -> None:
    doc = copy.deepcopy(VALID)
    doc["budgets"]["ram_kb"] = -5
    doc["name"] = None
    with pytest.raises(ContractError) as info:
        load_contract(doc)
    assert {p.path for p in info.value.problems} == {"budgets.ram_kb", "name"}, info.value.problems
