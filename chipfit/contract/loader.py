"""Load a contract from YAML (file or text) or a mapping, reporting every problem at once with its line.

>>> from chipfit import load_contract
>>> load_contract("name: x\\ntask: {data: {source: builtin}}\\ntarget: stm32h743\\nbudgets: {ram_kb: -5}\\n")
... # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
chipfit.errors.ContractError: 1 problem in the contract:
  line 4: budgets.ram_kb: expected greater than 0; given -5
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from chipfit.contract.paths import absolute, resolve_paths, target_path
from chipfit.contract.schema import _LOADER as _SCHEMA_LOADER
from chipfit.contract.schema import Contract
from chipfit.errors import ContractError, Problem, TargetError
from chipfit.field.catalog import CONDITIONS
from chipfit.naming import did_you_mean, one_of
from chipfit.paths import is_dir, is_file
from chipfit.targets.knowledge import RuntimeNameError, resolve_runtime, runtimes, split_runtime
from chipfit.targets.registry import create_target, list_targets, validate_target_doc
from chipfit.targets.target import Target
from chipfit.yamlio import MAX_BYTES, MAX_PROBLEMS, YamlDoc, cap_problems, load_yaml, problems_from_validation, short


def load_contract(source: str | Path | Mapping[str, Any], *, base_dir: str | Path | None = None) -> Contract:
    """Load and validate a contract from a YAML file path, YAML text, or a mapping.

    Relative paths inside the contract (data, target files) are resolved from the contract file's folder
    (or ``base_dir``). Raises :class:`~chipfit.errors.ContractError` listing every problem found.
    """
    doc, base = _read(source, base_dir)
    problems = list(doc.problems)
    target = None
    if not doc.problems:
        more, target = _check(doc, base)
        problems += more
    if problems:
        raise ContractError(cap_problems(problems))
    data = resolve_paths(dict(doc.data), base)
    data["base_dir"] = str(absolute(".", base))
    contract = Contract.model_validate(data)
    if target is not None:
        contract.keep_target(target.with_runtime(contract.runtime) if contract.runtime else target)
    return contract


_SCHEMA_LOADER["load"] = load_contract  # Contract.with_updates validates through it


def _read(source: str | Path | Mapping[str, Any], base_dir: str | Path | None) -> tuple[YamlDoc, Path]:
    if isinstance(source, Mapping):
        return YamlDoc.from_mapping(dict(source)), Path(base_dir or ".")
    text_like = isinstance(source, str) and ("\n" in source or ":" in source) and not source.endswith((".yaml", ".yml"))
    if text_like:
        return load_yaml(str(source), file=None), Path(base_dir or ".")
    path = Path(source)
    if not is_file(path):
        return YamlDoc(data=None, file=str(path), problems=[Problem(
            "(document)", "an existing contract file", f"'{path}' (no such file)", None, str(path),
            "Check the path, or start from one of the contracts in examples/.")]), Path(".")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:  # refused unread: a contract names its data by path
            return YamlDoc(data=None, file=str(path), problems=[Problem(
                "(document)", f"a contract file of at most {MAX_BYTES:,} bytes", f"{size:,} bytes", None, str(path),
                "A contract describes data by path; keep the data itself out of it.")]), Path(".")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return YamlDoc(data=None, file=str(path), problems=[Problem(
            "(document)", "a readable UTF-8 YAML file", f"{type(exc).__name__}: {exc}", None, str(path))]), Path(".")
    return load_yaml(text, file=str(path)), Path(base_dir) if base_dir else path.parent


def _check(doc: YamlDoc, base: Path) -> tuple[list[Problem], Target | None]:
    """Every problem of the document, and the target it resolves to (kept by the contract)."""
    data = doc.data
    if not isinstance(data, dict):
        return [doc.problem((), "a mapping with name, task, target and budgets",
                            "an empty document" if data is None else f"a {type(data).__name__}: {short(data)}")], None
    problems: list[Problem] = []
    if "base_dir" in data:
        problems.append(doc.problem(("base_dir",), "no 'base_dir' key (chipfit sets it)", "'base_dir'"))
    try:
        Contract.model_validate({**data, "base_dir": str(base)})
    except ValidationError as exc:
        problems += problems_from_validation(exc, doc, Contract)
    target, tprob = _check_target(doc, data.get("target"), base)
    problems += tprob
    problems += _check_runtime(doc, data.get("runtime"), target)
    problems += _check_task(doc, data.get("task"), base)
    problems += _check_field(doc, data.get("field"), data.get("task"))
    problems += _check_recipe(doc, data)
    return problems, target


def _check_target(doc: YamlDoc, spec: Any, base: Path) -> tuple[Target | None, list[Problem]]:
    if isinstance(spec, dict):
        sub = YamlDoc(data=spec, lines={k[1:]: v for k, v in doc.lines.items() if k[:1] == ("target",)},
                      file=doc.file)
        tspec, probs = validate_target_doc(sub)
        if probs:
            return None, [Problem("target." + p.path if p.path and p.path != "(document)" else "target", p.expected,
                                  p.given, p.line, doc.file, p.hint) for p in probs]
        from chipfit.targets.registry import spec_to_target

        return spec_to_target(tspec, origin="inline", file=doc.file), []  # type: ignore[arg-type]
    if not isinstance(spec, str) or not spec.strip():
        return None, []  # the schema already reported it
    try:
        return create_target(target_path(spec, base)), []
    except TargetError as exc:
        out = []
        for p in exc.problems:
            if p.file and p.line is not None:  # inside a target file: keep its location, say where it is used
                out.append(Problem(f"target ({p.file}:{p.line}) {p.path}", p.expected, p.given,
                                   doc.line(("target",)), doc.file, p.hint))
            elif p.file:
                out.append(Problem("target", p.expected, p.given, doc.line(("target",)), doc.file, p.hint))
            else:
                hint = p.hint or ""
                if p.path == "target" and "Did you mean" not in hint:
                    hint = f"Known devices: {', '.join(list_targets())}."
                out.append(Problem("target", p.expected, p.given, doc.line(("target",)), doc.file, hint or None))
        return None, out


def _check_runtime(doc: YamlDoc, runtime: Any, target: Target | None) -> list[Problem]:
    if runtime is None:
        return []
    known = runtimes()
    name = split_runtime(runtime)[0] if isinstance(runtime, str) else runtime
    if not isinstance(runtime, str) or name not in known:
        return [doc.problem(("runtime",), f"a runtime name (name or name@version), {one_of(known)}", short(runtime),
                            did_you_mean(str(runtime), known).strip() or None)]
    try:
        resolve_runtime(runtime)
    except RuntimeNameError as exc:
        return [doc.problem(("runtime",), str(exc).split("; given")[0], f"'{runtime}'",
                            f"Write '{name}' for the latest known version.")]
    if target is not None:
        info = known[name]
        ok = target.core in info.cores and (
            not info.accelerators or (target.accelerator is not None and target.accelerator.kind in info.accelerators))
        if not ok:
            return [doc.problem(("runtime",), f"a runtime that runs on {target.name} ({target.core}): "
                                f"{', '.join(target.runtimes)}", f"'{runtime}'",
                                "Remove 'runtime' to use the device's default.")]
    return []


def _check_recipe(doc: YamlDoc, data: dict[str, Any]) -> list[Problem]:
    """Training recipes that only apply to one modality (SpecAugment: audio; CutMix: images)."""
    search, task = data.get("search"), data.get("task")
    recipe = search.get("recipe") if isinstance(search, dict) else None
    if not isinstance(recipe, dict):
        return []
    inp = task.get("input") if isinstance(task, dict) else None
    modality = inp.get("modality", "image") if isinstance(inp, dict) else "image"
    out = []
    if recipe.get("specaugment") in (True, "on") and modality != "audio":
        out.append(doc.problem(("search", "recipe", "specaugment"), "'auto' or 'off' for a contract whose input is "
                               f"{modality} (SpecAugment masks audio features)", short(recipe["specaugment"]),
                               "Leave it at 'auto': it applies SpecAugment to audio only."))
    if recipe.get("mixup") in ("cutmix", "mixup+cutmix") and modality != "image":
        out.append(doc.problem(("search", "recipe", "mixup"), f"'auto', 'mixup' or 'off' for a contract whose input "
                               f"is {modality} (CutMix cuts image patches)", short(recipe["mixup"])))
    return out


def _check_task(doc: YamlDoc, task: Any, base: Path) -> list[Problem]:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        return []
    data = task["data"]
    out = []
    source = data.get("source")
    if source != "builtin" and task.get("input") is None and source in ("arrays", "image-folder", "audio-folder"):
        out.append(doc.problem(("task", "input"), "an input description for non-built-in data "
                               "(modality and shape, or sample_rate_hz and duration_s for audio)", "nothing"))
    path = data.get("path")
    if isinstance(path, str) and source in ("arrays", "image-folder", "audio-folder"):
        p = absolute(path, base)
        if source == "arrays" and not is_file(p):
            out.append(doc.problem(("task", "data", "path"), "an existing .npz or .csv file",
                                   f"'{path}' (not found at {p})", "Paths are relative to the contract's folder."))
        elif source == "arrays" and p.suffix.lower() not in (".npz", ".csv"):
            out.append(doc.problem(("task", "data", "path"), "a .npz or .csv file", f"'{p.name}'"))
        elif source != "arrays" and not is_dir(p):
            out.append(doc.problem(("task", "data", "path"), "an existing folder of class subfolders",
                                   f"'{path}' (not found at {p})", "Paths are relative to the contract's folder."))
    return out


def _check_field(doc: YamlDoc, field: Any, task: Any) -> list[Problem]:
    if not isinstance(field, list):
        return []
    modality = None
    if isinstance(task, dict):
        inp = task.get("input")
        modality = inp.get("modality") if isinstance(inp, dict) else ("image" if isinstance(task.get("data"), dict)
                                                                       and task["data"].get("source") == "builtin"
                                                                       else None)
    out = []
    for i, item in enumerate(field):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name not in CONDITIONS:  # hints for the first problems only: a 100,000-item list stays fast
            hint = did_you_mean(name, CONDITIONS).strip() or None if len(out) < MAX_PROBLEMS else None
            out.append(doc.problem(("field", i, "name"), f"a field condition, {one_of(CONDITIONS)}", f"'{name}'",
                                   hint))
        elif modality and CONDITIONS[name].modality != modality:
            names = [c for c, info in CONDITIONS.items() if info.modality == modality]
            out.append(doc.problem(("field", i, "name"), f"a condition for {modality} input: {', '.join(names)}",
                                   f"'{name}' (a {CONDITIONS[name].modality} condition)"))
    return out
