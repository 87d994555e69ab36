"""Registry of devices: ``create_target``, ``list_targets``, ``register_target``, target files.

>>> from chipfit.targets.registry import create_target, list_targets
>>> list_targets("stm32h7*")
['stm32h743', 'stm32h7a3']
>>> list_targets("stm32")
['stm32f746', 'stm32h743', 'stm32h7a3', 'stm32l4r5']
>>> create_target("stm32h734")  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
chipfit.errors.TargetError: ... Did you mean 'stm32h743'?
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from chipfit.errors import Problem, TargetError
from chipfit.naming import did_you_mean
from chipfit.paths import is_file
from chipfit.targets.knowledge import RuntimeNameError, core_types, resolve_runtime, runtimes, split_runtime
from chipfit.targets.memory import MemorySystem
from chipfit.targets.schema import TargetSpec
from chipfit.targets.target import Accelerator, Target
from chipfit.yamlio import YamlDoc, load_yaml, problems_from_validation

_FACTORIES: dict[str, Callable[[], Target]] = {}


def register_target(name: str, factory: Callable[[], Target]) -> None:
    """Register a device under ``name``; ``factory`` builds its Target on first use."""
    _FACTORIES[name] = factory


def _builtin_files() -> dict[str, Any]:
    root = resources.files("chipfit.targets").joinpath("profiles")
    return {p.name[: -len(".yaml")]: p for p in root.iterdir() if p.name.endswith(".yaml")}


@functools.cache
def _load_builtin(name: str) -> Target:
    path = _builtin_files()[name]
    return target_from_yaml(path.read_text(), file=f"chipfit/targets/profiles/{name}.yaml", origin="builtin")


def _ensure_registered() -> None:
    if "host" not in _FACTORIES:
        from chipfit.targets.host import host_target

        register_target("host", host_target)
    for name in _builtin_files():
        _FACTORIES.setdefault(name, functools.partial(_load_builtin, name))


def list_targets(pattern: str = "*") -> list[str]:
    """Registered device names matching ``pattern``, sorted: a shell-style glob when it has ``*``, ``?`` or
    ``[``, otherwise a part of the name (case-insensitive).

    >>> list_targets("nrf"), list_targets("H7A")
    (['nrf52840'], ['stm32h7a3'])
    """
    _ensure_registered()
    if any(ch in pattern for ch in "*?["):
        return sorted(n for n in _FACTORIES if fnmatch.fnmatch(n, pattern))
    part = pattern.lower()
    return sorted(n for n in _FACTORIES if part in n.lower())


def create_target(spec: str | Path | Mapping[str, Any], *, runtime: str | None = None) -> Target:
    """A Target from a registered name (``"rpi4"``, or ``"rpi4.onnxruntime"`` / ``"stm32h743.x-cube-ai@10.2"``
    to pin the runtime and its version),
    a path to a target file, or an inline mapping in the target-file format.
    """
    if isinstance(spec, Mapping):
        target = target_from_mapping(spec)
    elif isinstance(spec, Path) or str(spec).endswith((".yaml", ".yml")) or "/" in str(spec):
        target = load_target_file(spec)
    else:
        target = _by_name(str(spec))
    if runtime is not None:
        target = pin_runtime(target, runtime)
    return target


def _by_name(name: str) -> Target:
    _ensure_registered()
    if name in _FACTORIES:
        return _FACTORIES[name]()
    base, _, tag = name.partition(".")
    if tag and base in _FACTORIES:
        return pin_runtime(_FACTORIES[base](), tag)
    known = list_targets()
    raise TargetError([Problem("target", "a registered device name or a target file",
                               f"'{name}'", hint=(did_you_mean(name, known).strip() or
                                                  "Run 'chipfit devices' to list them, or declare your board "
                                                  "in a target file."))])


def pin_runtime(target: Target, runtime: str) -> Target:
    """``target`` with ``runtime`` (``name`` or ``name@version``) as its runtime; errors say which runtimes
    (and versions) the device offers."""
    known = runtimes()
    spec, (runtime, version) = runtime, split_runtime(runtime)
    if runtime not in known:
        raise TargetError([Problem("runtime", f"one of {', '.join(sorted(known))}", f"'{spec}'",
                                   hint=did_you_mean(runtime, known).strip() or None)])
    if version is not None:
        try:
            resolve_runtime(spec)
        except RuntimeNameError as exc:
            raise TargetError([Problem("runtime", str(exc).split("; given")[0], f"'{spec}'",
                                       hint=f"Write '{runtime}' for the latest known version; 'chipfit devices "
                                            f"show {target.name}' lists the versions.")]) from None
    if runtime not in target.runtimes:
        info = known[runtime]
        compatible = target.core in info.cores and (
            not info.accelerators or (target.accelerator is not None and target.accelerator.kind in info.accelerators))
        if not compatible:
            raise TargetError([Problem("runtime", f"a runtime of {target.name}: {', '.join(target.runtimes)}",
                                       f"'{runtime}' (runs on {', '.join(info.cores)})")])
    return target.with_runtime(spec)


def load_target_file(path: str | Path) -> Target:
    """Read a user's target file (see the README for the format)."""
    p = Path(path)
    if not is_file(p):
        raise TargetError([Problem("target", "an existing target file", f"'{p}' (no such file)",
                                   file=str(p),
                                   hint="Check the path (relative paths are from the contract's folder).")])
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError([Problem("(document)", "a readable UTF-8 YAML file", f"{type(exc).__name__}",
                                   file=str(p))]) from exc
    return target_from_yaml(text, file=str(p), origin=f"file:{p}")


def target_from_yaml(text: str, *, file: str, origin: str) -> Target:
    doc = load_yaml(text, file=file)
    if doc.problems:
        raise TargetError(doc.problems)
    return target_from_doc(doc, origin=origin)


def target_from_mapping(data: Mapping[str, Any], *, origin: str = "inline") -> Target:
    return target_from_doc(YamlDoc.from_mapping(dict(data)), origin=origin)


def validate_target_doc(doc: YamlDoc, prefix: tuple[str | int, ...] = ()) -> tuple[TargetSpec | None, list[Problem]]:
    """Validate a target document; problems carry key paths (under ``prefix``) and lines."""
    data = doc.data
    if not isinstance(data, dict):
        path = ".".join(str(p) for p in prefix) or "(document)"
        return None, [Problem(path, "a mapping of target facts (name, core, clock_mhz, sram_kb, flash_kb, runtime)",
                              f"{type(data).__name__}", doc.line(prefix), doc.file)]
    try:
        return TargetSpec.model_validate(data), []
    except ValidationError as exc:
        return None, problems_from_validation(exc, doc, TargetSpec, prefix)


def target_from_doc(doc: YamlDoc, *, origin: str) -> Target:
    spec, problems = validate_target_doc(doc)
    if problems or spec is None:
        raise TargetError(problems)
    return spec_to_target(spec, origin=origin, file=doc.file)


def spec_to_target(spec: TargetSpec, *, origin: str, file: str | None = None) -> Target:
    """Turn a validated spec into a Target; missing power figures are estimated from the core type."""
    where = f"declared in {file}" if file else "declared inline"
    sources: dict[str, str] = {}

    def val(name: str, figure: Any, default: float | None = None, default_source: str = "") -> Any:
        if figure is None:
            if default is not None:
                sources[name] = default_source
            return default
        sources[name] = where if figure.source == "declared" else figure.source
        return figure.value

    ct = core_types()[spec.core]
    clock = val("clock_mhz", spec.clock_mhz)
    mcu = ct.family == "mcu"
    active = val("active_power_mw", spec.active_power_mw, (0.3 if mcu else 1.0) * clock,
                 f"est.: {0.3 if mcu else 1.0} mW/MHz for a {spec.core} (no figure declared)")
    sleep = val("sleep_power_uw", spec.sleep_power_uw, 10.0 if mcu else 1.5e6,
                "est.: typical retention sleep (no figure declared)" if mcu else "est.: typical idle (no figure)")
    names, pinned = [], {}
    for r in spec.runtime_list():
        name, version = split_runtime(r)
        names.append(name)
        if version is not None:
            pinned[name] = resolve_runtime(r)[1] or version
    acc = None
    if spec.accelerator is not None:
        a = spec.accelerator
        acc = Accelerator(a.kind, a.macs_per_cycle.value, a.clock_mhz.value,
                          a.power_mw.value if a.power_mw else None, a.sram_kb.value if a.sram_kb else None)
        for key in ("macs_per_cycle", "clock_mhz", "power_mw", "sram_kb"):
            fig = getattr(a, key)
            if fig is not None:
                sources[f"accelerator.{key}"] = where if fig.source == "declared" else fig.source
    memory = None
    if spec.memory is not None:
        facts: dict[str, Any] = {}
        for key in type(spec.memory).model_fields:
            fig = getattr(spec.memory, key)
            if fig is not None:
                facts[key] = int(fig.value) if key == "flash_wait_states" else fig.value
                sources[f"memory.{key}"] = where if fig.source == "declared" else fig.source
        memory = MemorySystem(**facts, clock_mhz=clock)
    return Target(
        name=spec.name, core=spec.core, clock_mhz=clock, sram_kb=val("sram_kb", spec.sram_kb),
        flash_kb=val("flash_kb", spec.flash_kb), runtimes=tuple(names), runtime_versions=pinned,
        active_power_mw=active, sleep_power_uw=sleep,
        cores=int(val("cores", spec.cores, 1, "default: one core")),
        arena_kb=val("arena_kb", spec.arena_kb), mem_bandwidth_gbps=val("mem_bandwidth_gbps", spec.mem_bandwidth_gbps),
        accelerator=acc, description=spec.description, notes=spec.notes, origin=origin, sources=sources,
        run_current_ua_per_mhz=val("run_current_ua_per_mhz", spec.run_current_ua_per_mhz),
        supply_v=val("supply_v", spec.supply_v), board_overhead_mw=val("board_overhead_mw", spec.board_overhead_mw),
        memory=memory,
    )
