"""The contract loader at its limits: alias bombs, oversized documents and thousands of problems are refused or
summarised quickly, never expanded or listed in full."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from chipfit import load_contract
from chipfit.cli import app
from chipfit.errors import ContractError
from chipfit.yamlio import ALIAS_BUDGET, MAX_BYTES, MAX_PROBLEMS, load_yaml

BASE = "name: x\ntask: {data: {source: builtin}}\ntarget: stm32h743\n"


def bomb(levels: int, fanout: int) -> str:
    """A "billion laughs" document: each level repeats the previous one ``fanout`` times."""
    names = "abcdefghijklmnop"
    lines = [f"a: &a [{','.join(['x'] * fanout)}]"]
    lines += [f"{names[k]}: &{names[k]} [{','.join(['*' + names[k - 1]] * fanout)}]" for k in range(1, levels)]
    return "\n".join(lines) + "\n"


BOMB_424 = bomb(10, 10)  # 10^10 values once expanded
BOMB_340 = bomb(8, 10)


def test_bombs_are_small() -> None:
    assert len(BOMB_424) <= 424 and len(BOMB_340) <= 340


NESTED = BASE + "description: &z\n  " + BOMB_340.replace("\n", "\n  ").rstrip()


@pytest.mark.parametrize("text", [BOMB_424, BOMB_340, NESTED], ids=["424-bytes", "340-bytes", "nested-in-contract"])
def test_alias_bomb_is_refused_quickly(text: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ContractError) as info:
        load_contract(text)
    assert time.perf_counter() - start < 5
    (p,) = info.value.problems
    assert "aliases" in p.expected and f"{ALIAS_BUDGET:,}" in p.expected and "expand" in p.given, p


def test_alias_bomb_cli_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BASE + "description: &z\n  " + BOMB_424.replace("\n", "\n  ").rstrip() + "\n")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert "aliases" in result.output + (result.stderr if hasattr(result, "stderr") else "")


def test_small_aliases_still_work() -> None:
    doc = load_yaml("a: &a [1, 2]\nb: &b [*a, *a]\nc: [*b, *b]\nd: {<<: {x: 1}, y: 2}\n")
    assert not doc.problems
    assert doc.data["c"] == [[[1, 2], [1, 2]], [[1, 2], [1, 2]]] and doc.data["d"] == {"x": 1, "y": 2}


@settings(max_examples=30, deadline=None)
@given(levels=st.integers(1, 16), fanout=st.integers(1, 12))
def test_fuzzed_bombs_are_bounded(levels: int, fanout: int) -> None:
    """Any alias pyramid either loads (small enough) or is refused, in well under a second of expansion."""
    text = bomb(levels, fanout)
    sizes = [1 + fanout]  # a level's sequence once expanded: itself and its items
    for _ in range(1, levels):
        sizes.append(1 + fanout * sizes[-1])
    distinct = 1 + 2 * levels + fanout  # the mapping, keys, sequences and the scalars of the first level
    added = 1 + levels + sum(sizes) - distinct
    start = time.perf_counter()
    doc = load_yaml(text)
    assert time.perf_counter() - start < 5
    if doc.problems:
        assert added > ALIAS_BUDGET and "aliases" in doc.problems[0].expected, doc.problems
    else:
        assert added <= ALIAS_BUDGET


def test_oversized_text_and_file_are_refused(tmp_path: Path) -> None:
    text = BASE + "description: '" + "x" * MAX_BYTES + "'\n"
    with pytest.raises(ContractError) as info:
        load_contract(text)
    (p,) = info.value.problems
    assert f"{MAX_BYTES:,} bytes" in p.expected and f"{len(text):,} bytes" == p.given
    path = tmp_path / "big.yaml"
    path.write_text(text)
    with pytest.raises(ContractError) as info:
        load_contract(path)
    (p,) = info.value.problems
    assert p.file == str(path) and f"{MAX_BYTES:,}" in p.expected


@pytest.mark.parametrize(("body", "count", "first"), [
    ("".join(f"k{i}: {i}\n" for i in range(45_000)), 45_000, 4),
    ("field:\n" + "".join(f"  - {{name: noize{i}, severity: 0.1}}\n" for i in range(20_000)), 20_000, 5),
], ids=["unknown-keys", "list-items"])
def test_many_problems_are_capped(body: str, count: int, first: int) -> None:
    start = time.perf_counter()
    with pytest.raises(ContractError) as info:
        load_contract(BASE + body)
    assert time.perf_counter() - start < 30  # minutes before the cap
    problems = info.value.problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1].given.startswith(f"… and {count - MAX_PROBLEMS:,} more problems"), problems[-1]
    assert problems[0].line == first and problems[MAX_PROBLEMS - 1].line == first + MAX_PROBLEMS - 1
    assert "one of" in problems[0].expected  # listed problems keep their full wording
    assert "and" in str(info.value).splitlines()[-1]


def test_hints_survive_for_listed_problems() -> None:
    with pytest.raises(ContractError) as info:
        load_contract(BASE + "budgest: {}\n")
    (p,) = info.value.problems
    assert p.hint and "budgets" in p.hint


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 3 * MAX_PROBLEMS))
def test_problem_count_is_exact(n: int) -> None:
    """Listed + "N more" always equals the number of problems."""
    text = BASE + "".join(f"k{i}: 1\n" for i in range(n))
    try:
        load_contract(text)
    except ContractError as exc:
        ps = exc.problems
        more = int(ps[-1].given.split()[2].replace(",", "")) if ps[-1].given.startswith("…") else 0
        assert len(ps) - (1 if more else 0) + more == n
    else:
        assert n == 0
