"""Malformed contracts: every one exits 2 from ``chipfit check`` with a located, readable problem.

Each case is a small YAML text written to ``tmp_path``. The CLI must print ``file:LINE: key.path: expected
...; given ...`` (no traceback). Rich may wrap long lines on stderr, so locations are compared with all
whitespace removed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chipfit import load_contract
from chipfit.cli import app
from chipfit.errors import ContractError

HEAD = "name: demo\ntask:\n  data: {source: builtin}\ntarget: stm32l4r5\n"  # lines 1-4
BUILTIN = "task:\n  data: {source: builtin}\n"


@dataclass(frozen=True)
class Case:
    text: str | bytes | None  # None: the contract file is not written at all
    path: str  # key path (substring) printed right after "file:LINE: "
    line: int | None  # None: no line applies (missing file, empty document, undecodable file)
    needles: tuple[str, ...] = ()  # further text the message must contain (whitespace-insensitive)
    files: tuple[tuple[str, str | bytes], ...] = ()  # extra files next to the contract


BAD_CORE_BOARD = ("board.yaml", "name: myboard\ncore: cortex-m99\nclock_mhz: 160\nsram_kb: 256\n"
                  "flash_kb: 1024\nruntime: tflm\n")
BAD_CLOCK_BOARD = ("board.yaml", "name: myboard\ncore: cortex-m33\nclock_mhz: fast\nsram_kb: 256\n"
                   "flash_kb: 1024\nruntime: tflm\n")

CASES: dict[str, Case] = {
    # --- wrong types -------------------------------------------------------------------------------
    "string_for_number": Case(HEAD + "budgets:\n  ram_kb: lots\n", "budgets.ram_kb", 6, ("'lots'", "number")),
    "string_for_trials": Case(HEAD + "search:\n  trials: many\n", "search.trials", 6, ("'many'", "integer")),
    "list_for_budgets_mapping": Case(HEAD + "budgets: [64, 256]\n", "budgets", 5, ("[64, 256]",)),
    "list_for_task_mapping": Case("name: demo\ntask: [builtin]\ntarget: stm32l4r5\n", "task", 2, ("['builtin']",)),
    "mapping_for_name_string": Case("name: {first: demo}\n" + BUILTIN + "target: stm32l4r5\n", "name", 1,
                                    ("a valid string",)),
    "number_for_target": Case("name: demo\n" + BUILTIN + "target: 42\n", "target", 4, ("device name", "42")),
    "empty_target_string": Case("name: demo\n" + BUILTIN + "target: ''\n", "target", 4, ("device name",)),
    "unknown_dtype": Case(HEAD + "dtype: int4\n", "dtype", 5, ("'int8'", "'int4'")),
    # --- budgets out of range ----------------------------------------------------------------------
    "negative_ram": Case(HEAD + "budgets:\n  ram_kb: -5\n", "budgets.ram_kb", 6, ("greater than 0", "-5")),
    "zero_flash": Case(HEAD + "budgets:\n  flash_kb: 0\n", "budgets.flash_kb", 6, ("greater than 0",)),
    "negative_energy": Case(HEAD + "budgets:\n  energy_mj: -0.5\n", "budgets.energy_mj", 6, ("greater than 0",)),
    "negative_latency_scalar": Case(HEAD + "budgets:\n  latency_ms: -5\n", "budgets.latency_ms", 6,
                                    ("greater than 0", "-5")),
    "zero_latency_max": Case(HEAD + "budgets:\n  latency_ms:\n    max: 0\n", "budgets.latency_ms.max", 7,
                             ("greater than 0",)),
    "percentile_over_100": Case(HEAD + "budgets:\n  latency_ms: {max: 5, percentile: 150}\n",
                                "budgets.latency_ms.percentile", 6, ("less than or equal to 100", "150")),
    "accuracy_over_1": Case(HEAD + "budgets:\n  ram_kb: 64\n  accuracy: 1.5\n", "budgets.accuracy", 7,
                            ("less than or equal to 1", "1.5")),
    "field_accuracy_over_1": Case(HEAD + "budgets:\n  field_accuracy: 2\n", "budgets.field_accuracy", 6,
                                  ("less than or equal to 1",)),
    # --- unknown keys (did you mean) ---------------------------------------------------------------
    "unknown_top_level_key": Case(HEAD + "budget:\n  ram_kb: 64\n", "budget", 5,
                                  ("unknown key 'budget'", "Did you mean 'budgets'?")),
    "unknown_nested_key_lattency": Case(HEAD + "budgets:\n  ram_kb: 64\n  lattency: 5\n", "budgets.lattency", 7,
                                        ("unknown key 'lattency'", "Did you mean 'latency_ms'?")),
    "unknown_search_key": Case(HEAD + "search:\n  trails: 5\n", "search.trails", 6,
                               ("unknown key 'trails'", "Did you mean 'trials'?")),
    "unknown_duty_cycle_key": Case(HEAD + "duty_cycle:\n  inferences_per_second: 1\n  battery_mah: 1000\n"
                                   "  min_battery_days: 30\n  battery_volt: 3\n", "duty_cycle.battery_volt", 9,
                                   ("Did you mean 'battery_volts'?",)),
    "base_dir_is_reserved": Case(HEAD + "base_dir: /tmp\n", "base_dir", 5, ("chipfit sets it",)),
    # --- device / runtime --------------------------------------------------------------------------
    "unknown_device": Case("name: demo\n" + BUILTIN + "target: stm32h734\n", "target", 4,
                           ("'stm32h734'", "Did you mean", "'stm32h743'")),
    "unknown_runtime": Case(HEAD + "runtime: tflm-cmsis\n", "runtime", 5,
                            ("'tflm-cmsis'", "Did you mean 'tflm-cmsis-nn'?")),
    "runtime_not_a_string": Case(HEAD + "runtime: [tflm]\n", "runtime", 5, ("a runtime name",)),
    "runtime_incompatible_with_device": Case(HEAD + "runtime: tensorrt\n", "runtime", 5,
                                             ("runs on stm32l4r5", "'tensorrt'")),
    # --- target files and inline targets -----------------------------------------------------------
    "target_file_missing": Case("name: demo\n" + BUILTIN + "target: boards/nothere.yaml\n", "target", 4,
                                ("an existing target file", "no such file")),
    "target_file_unknown_core": Case("name: demo\n" + BUILTIN + "target: board.yaml\n", "target (", 4,
                                     ("board.yaml:2) core", "a known core type", "'cortex-m99'"),
                                     files=(BAD_CORE_BOARD,)),
    "target_file_bad_clock": Case("name: demo\n" + BUILTIN + "target: board.yaml\n", "target (", 4,
                                  ("board.yaml:3) clock_mhz", "'fast'"), files=(BAD_CLOCK_BOARD,)),
    "inline_target_bad_key": Case("name: demo\n" + BUILTIN + "target:\n  name: myboard\n  core: cortex-m33\n"
                                  "  clock_mhzz: 160\n  sram_kb: 256\n  flash_kb: 1024\n  runtime: tflm\n",
                                  "target.clock_mhzz", 7, ("unknown key 'clock_mhzz'", "Did you mean 'clock_mhz'?")),
    "inline_target_missing_core": Case("name: demo\n" + BUILTIN + "target:\n  name: myboard\n  clock_mhz: 160\n"
                                       "  sram_kb: 256\n  flash_kb: 1024\n  runtime: tflm\n", "target.core", 4,
                                       ("this key (required)",)),
    # --- required keys -----------------------------------------------------------------------------
    "missing_name": Case(BUILTIN + "target: stm32l4r5\n", "name", 1, ("this key (required)", "nothing")),
    "missing_task": Case("name: demo\ntarget: stm32l4r5\n", "task", 1, ("this key (required)",)),
    "missing_target": Case("name: demo\n" + BUILTIN, "target", 1, ("this key (required)",)),
    "missing_task_data": Case("name: demo\ntask:\n  classes: 10\ntarget: stm32l4r5\n", "task.data", 2,
                              ("this key (required)",)),
    "missing_key_after_comment": Case("# a contract\n\n" + BUILTIN + "target: stm32l4r5\n", "name", 3,
                                      ("this key (required)",)),
    # --- data --------------------------------------------------------------------------------------
    "arrays_npz_missing": Case("name: demo\ntask:\n  data: {source: arrays, path: nothere.npz}\n"
                               "  input: {modality: image, shape: [8, 8, 1]}\ntarget: stm32l4r5\n",
                               "task.data.path", 3, ("an existing .npz or .csv file", "'nothere.npz'")),
    "arrays_wrong_suffix": Case("name: demo\ntask:\n  data: {source: arrays, path: data.txt}\n"
                                "  input: {modality: image, shape: [8, 8, 1]}\ntarget: stm32l4r5\n",
                                "task.data.path", 3, ("a .npz or .csv file", "'data.txt'"),
                                files=(("data.txt", "1,2,3\n"),)),
    "arrays_without_path": Case("name: demo\ntask:\n  data: {source: arrays}\n"
                                "  input: {modality: image, shape: [8, 8, 1]}\ntarget: stm32l4r5\n",
                                "task.data.path", 3, ("this key (required)",)),
    "arrays_without_input": Case("name: demo\ntask:\n  data: {source: arrays, path: d.npz}\ntarget: stm32l4r5\n",
                                 "task.input", 2, ("an input description",), files=(("d.npz", b""),)),
    "unknown_data_source": Case("name: demo\ntask:\n  data: {source: hdf5}\ntarget: stm32l4r5\n", "task.data", 3,
                                ("'hdf5'", "'builtin'")),
    "val_fraction_over_1": Case("name: demo\ntask:\n  data: {source: arrays, path: d.npz, val_fraction: 1.5}\n"
                                "  input: {modality: image, shape: [8, 8, 1]}\ntarget: stm32l4r5\n",
                                "task.data.val_fraction", 3, ("less than 1",), files=(("d.npz", b""),)),
    "classes_below_2": Case("name: demo\ntask:\n  data: {source: builtin}\n  classes: 1\ntarget: stm32l4r5\n",
                            "task.classes", 4, ("greater than or equal to 2",)),
    # --- input -------------------------------------------------------------------------------------
    "audio_without_sample_rate": Case("name: demo\ntask:\n  data: {source: builtin}\n  input: {modality: audio}\n"
                                      "target: stm32l4r5\n", "task.input", 4, ("sample_rate_hz", "duration_s")),
    "image_without_shape": Case("name: demo\ntask:\n  data: {source: builtin}\n  input: {modality: image}\n"
                                "target: stm32l4r5\n", "task.input", 4, ("a 'shape'",)),
    "zero_in_shape": Case("name: demo\ntask:\n  data: {source: builtin}\n  input: {modality: image, shape: [0, 8]}\n"
                          "target: stm32l4r5\n", "task.input.shape[0]", 4, ("greater than 0",)),
    "unknown_modality": Case("name: demo\ntask:\n  data: {source: builtin}\n  input:\n    modality: video\n"
                             "    shape: [8]\ntarget: stm32l4r5\n", "task.input.modality", 5, ("'video'",)),
    # --- field conditions --------------------------------------------------------------------------
    "unknown_field_condition": Case(HEAD + "field:\n  - {name: gausian_noise, severity: 0.1}\n", "field[0].name", 6,
                                    ("'gausian_noise'", "Did you mean", "'gaussian_noise'")),
    "field_condition_wrong_modality": Case(HEAD + "field:\n  - {name: brightness, severity: 1.2}\n"
                                           "  - {name: babble, severity: 10}\n", "field[1].name", 7,
                                           ("a condition for image input", "'babble'")),
    "field_severity_and_range": Case(HEAD + "field:\n  - name: brightness\n    severity: 1.1\n    range: [0.5, 1.5]\n",
                                     "field[0]", 6, ("exactly one of 'severity' or 'range'",)),
    "field_range_low_above_high": Case(HEAD + "field:\n  - {name: gaussian_noise, severity: 0.1}\n"
                                       "  - {name: brightness, range: [1.5, 0.5]}\n", "field[1]", 7,
                                       ("low <= high",)),
    "field_range_three_items": Case(HEAD + "field:\n  - {name: brightness, range: [1, 2, 3]}\n", "field[0].range", 6,
                                    ("at most 2 items",)),
    "field_negative_severity": Case(HEAD + "field:\n  - {name: gaussian_noise, severity: -1}\n",
                                    "field[0].severity", 6, ("greater than or equal to 0",)),
    "field_not_a_list": Case(HEAD + "field:\n  name: brightness\n", "field", 5, ("a valid list",)),
    # --- duty cycle --------------------------------------------------------------------------------
    "duty_cycle_both_rates": Case(HEAD + "duty_cycle:\n  inferences_per_second: 1\n  inferences_per_hour: 60\n"
                                  "  battery_mah: 1000\n  min_battery_days: 30\n", "duty_cycle", 5,
                                  ("exactly one of 'inferences_per_second' or 'inferences_per_hour'",)),
    "duty_cycle_no_rate": Case(HEAD + "duty_cycle:\n  battery_mah: 1000\n  min_battery_days: 30\n", "duty_cycle", 5,
                               ("exactly one of 'inferences_per_second' or 'inferences_per_hour'",)),
    "duty_cycle_missing_battery_mah": Case(HEAD + "duty_cycle:\n  inferences_per_second: 1\n"
                                           "  min_battery_days: 30\n", "duty_cycle.battery_mah", 5,
                                           ("this key (required)",)),
    "duty_cycle_volts_too_high": Case(HEAD + "duty_cycle:\n  inferences_per_hour: 10\n  battery_mah: 1000\n"
                                      "  battery_volts: 230\n  min_battery_days: 30\n", "duty_cycle.battery_volts",
                                      8, ("less than or equal to 48",)),
    # --- search ------------------------------------------------------------------------------------
    "search_trials_zero": Case(HEAD + "search:\n  trials: 0\n", "search.trials", 6,
                               ("greater than or equal to 1", "0")),
    "search_unknown_backend": Case(HEAD + "search:\n  trials: 5\n  backend: slurm\n", "search.backend", 7,
                                   ("'local' or 'ray'", "'slurm'")),
    "search_zero_workers": Case(HEAD + "search: {workers: 0}\n", "search.workers", 5, ("greater than or equal to 1",)),
    # --- YAML syntax and document shape ------------------------------------------------------------
    "yaml_bad_indentation": Case("name: demo\ntask:\n  data: {source: builtin}\n   kind: classification\n"
                                 "target: stm32l4r5\n", "(document)", 4, ("valid YAML", "syntax error")),
    "yaml_unclosed_bracket": Case("name: demo\ntask: {data: {source: builtin}\ntarget: stm32l4r5\n", "(document)", 3,
                                  ("valid YAML", "syntax error")),
    "yaml_tab_indent": Case("name: demo\ntask:\n\tdata: {source: builtin}\ntarget: stm32l4r5\n", "(document)", 3,
                            ("valid YAML", "'\\t'")),
    "duplicate_top_level_key": Case("name: demo\nname: other\n" + BUILTIN + "target: stm32l4r5\n", "name", 2,
                                    ("each key once", "duplicate of the key on line 1")),
    "duplicate_nested_key": Case(HEAD + "budgets:\n  ram_kb: 64\n  ram_kb: 128\n", "budgets.ram_kb", 7,
                                 ("each key once", "line 6")),
    "empty_file": Case("", "(document)", None, ("a mapping with name, task, target", "an empty document")),
    "comments_only_file": Case("# nothing here\n", "(document)", None, ("an empty document",)),
    "top_level_list": Case("- name: demo\n- target: stm32l4r5\n", "(document)", 1, ("a mapping", "a list")),
    "top_level_scalar": Case("just some words\n", "(document)", 1, ("a mapping", "'just some words'")),
    "non_utf8_file": Case(b"name: caf\xe9\n" + BUILTIN.encode() + b"target: stm32l4r5\n", "(document)", None,
                          ("UTF-8", "UnicodeDecodeError")),
    "nonexistent_contract_path": Case(None, "(document)", None, ("an existing contract file", "no such file")),
    "name_with_spaces": Case("name: my contract\n" + BUILTIN + "target: stm32l4r5\n", "name", 1,
                             ("pattern", "'my contract'")),
}


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _cli_text(result: object) -> str:
    """stdout and stderr together, whichever the Click/Typer version keeps separately."""
    parts = [getattr(result, "output", "") or ""]
    try:
        stderr = getattr(result, "stderr", "")
    except ValueError:  # old Click: stderr not captured separately
        stderr = ""
    if stderr and stderr not in parts[0]:
        parts.append(stderr)
    return "\n".join(parts)


def _write(tmp_path: Path, case: Case) -> Path:
    for name, content in case.files:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
    path = tmp_path / "contract.yaml"
    if isinstance(case.text, bytes):
        path.write_bytes(case.text)
    elif isinstance(case.text, str):
        path.write_text(case.text, encoding="utf-8")
    return path


def test_enough_cases() -> None:
    assert len(CASES) >= 35


@pytest.mark.parametrize("case", [pytest.param(c, id=k) for k, c in CASES.items()])
def test_malformed_contract_cli(tmp_path: Path, case: Case) -> None:
    path = _write(tmp_path, case)
    result = CliRunner().invoke(app, ["check", str(path)])
    text = _cli_text(result)
    assert result.exit_code == 2, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in text
    assert "expected" in text and "given" in text, text
    flat = _squash(text)
    where = f"{path}:{case.line}:" if case.line is not None else f"{path}:"
    assert _squash(f"{where} {case.path}") in flat, f"{where} {case.path!r} not in:\n{text}"
    for needle in case.needles:
        assert _squash(needle) in flat, f"{needle!r} not in:\n{text}"


@pytest.mark.parametrize("case", [pytest.param(c, id=k) for k, c in CASES.items() if c.text is not None])
def test_malformed_contract_library(tmp_path: Path, case: Case) -> None:
    """The same cases through the library: a ContractError whose problems carry file, line and path."""
    path = _write(tmp_path, case)
    with pytest.raises(ContractError) as info:
        load_contract(path)
    problems = info.value.problems
    assert problems
    hits = [p for p in problems if case.path in (p.path or "(document)") and p.line == case.line]
    assert hits, [p.format() for p in problems]
    for p in problems:
        assert p.file == str(path)
        assert p.expected and p.given


FIVE_MISTAKES = """\
name: my contract
task:
  data: {source: builtin}
target: stm32h734
budgets:
  ram_kb: -5
  lattency: 5
search:
  trials: 0
field:
  - {name: gausian_noise, severity: 0.1}
"""


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "five.yaml"
    path.write_text(FIVE_MISTAKES, encoding="utf-8")
    with pytest.raises(ContractError) as info:
        load_contract(path)
    got = {(p.path, p.line) for p in info.value.problems}
    assert got == {("name", 1), ("target", 4), ("budgets.ram_kb", 6), ("budgets.lattency", 7),
                   ("search.trials", 9), ("field[0].name", 11)}, [p.format() for p in info.value.problems]
    assert len(info.value.problems) >= 5
    assert str(info.value).startswith("6 problems in the contract:")
    # and the CLI prints every one of them
    result = CliRunner().invoke(app, ["check", str(path)])
    flat = _squash(_cli_text(result))
    assert result.exit_code == 2
    for p, line in got:
        assert _squash(f"{path}:{line}: {p}:") in flat


# --- bugs found while writing these tests (fixed; kept as regression tests) -------------------------------------


def test_missing_target_file_path_has_no_none(tmp_path: Path) -> None:
    path = _write(tmp_path, CASES["target_file_missing"])
    with pytest.raises(ContractError) as info:
        load_contract(path)
    assert all("None" not in p.path for p in info.value.problems), [p.path for p in info.value.problems]


def test_inline_target_model_error_path() -> None:
    text = ("name: demo\n" + BUILTIN + "target: {name: b, core: cortex-m55, clock_mhz: 100, sram_kb: 256, "
            "flash_kb: 1024, runtime: vela}\n")
    with pytest.raises(ContractError) as info:
        load_contract(text)
    assert [p.path for p in info.value.problems] == ["target"]


@pytest.mark.parametrize("text,files", [
    pytest.param(HEAD + "field:\n  - {name: brightness, range: [1.5, 0.5]}\n", (), id="range_low_above_high"),
    pytest.param("name: demo\n" + BUILTIN + "target: board.yaml\n", (BAD_CORE_BOARD,), id="target_file_bad_core"),
])
def test_given_appears_once(tmp_path: Path, text: str, files: tuple[tuple[str, str], ...]) -> None:
    path = _write(tmp_path, Case(text, "", None, files=files))
    with pytest.raises(ContractError) as info:
        load_contract(path)
    for p in info.value.problems:
        assert p.format().count("; given ") == 1, p.format()


def test_unknown_key_in_arrays_data_lists_arrays_keys(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"")
    text = ("name: demo\ntask:\n  data: {source: arrays, path: d.npz, paht: x}\n"
            "  input: {modality: image, shape: [8]}\ntarget: stm32l4r5\n")
    with pytest.raises(ContractError) as info:
        load_contract(text, base_dir=tmp_path)
    (p,) = info.value.problems
    assert p.path == "task.data.paht"
    assert "val_fraction" in p.expected and "path" in p.expected
    assert p.hint and "'path'" in p.hint


def test_unclosed_bracket_at_end_of_file_line_exists() -> None:
    text = HEAD + "budgets: {ram_kb: 64\n"
    with pytest.raises(ContractError) as info:
        load_contract(text)
    (p,) = info.value.problems
    assert p.line is not None and 1 <= p.line <= text.count("\n")


@pytest.mark.parametrize("text", [
    pytest.param("# nothing\n", id="empty"),
    pytest.param("- a\n- b\n", id="list"),
    pytest.param("just words\n", id="scalar"),
])
def test_document_problem_has_a_path(text: str) -> None:
    with pytest.raises(ContractError) as info:
        load_contract(text)
    assert all(p.path for p in info.value.problems), [p.to_dict() for p in info.value.problems]


def test_problems_one_per_line_when_piped(tmp_path: Path) -> None:
    path = _write(tmp_path, CASES["unknown_nested_key_lattency"])
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run([sys.executable, "-m", "chipfit.cli", "check", str(path)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: 1 problem")
    assert len(lines) == 2, proc.stderr
    assert lines[1].strip().startswith(f"{path}:7: budgets.lattency: expected")
