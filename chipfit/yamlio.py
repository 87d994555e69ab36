"""YAML loading that remembers where every key sits, and pydantic errors turned into located Problems.

>>> doc = load_yaml("a:\\n  b: 1\\n", file="x.yaml")
>>> doc.data, doc.line(("a", "b"))
({'a': {'b': 1}}, 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from chipfit.errors import Problem
from chipfit.naming import did_you_mean

Path_ = tuple[str | int, ...]


@dataclass
class YamlDoc:
    """Parsed YAML data plus the line of every key path (1-based)."""

    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    file: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def line(self, path: Sequence[str | int]) -> int | None:
        """Line of the deepest existing prefix of ``path``."""
        best = self.lines.get((), None)
        cur: Path_ = ()
        for part in path:
            if (*cur, part) in self.lines:
                cur = (*cur, part)
                best = self.lines[cur] if self.lines[cur] is not None else best
        return best

    def resolve(self, loc: Sequence[str | int]) -> Path_:
        """Drop pydantic's union / discriminator tags from ``loc``, keeping real key paths."""
        cur: Path_ = ()
        for part in loc:
            if (*cur, part) in self.lines:
                cur = (*cur, part)
        return cur

    def problem(self, path: Sequence[str | int], expected: str, given: str, hint: str | None = None) -> Problem:
        return Problem(format_path(path) or "(document)", expected, given, self.line(path), self.file, hint)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> YamlDoc:
        """A document built in Python: no lines, but every key path is known (for error paths)."""
        doc = cls(data=data)

        def walk(value: Any, path: Path_) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    doc.lines[(*path, str(k))] = None  # type: ignore[assignment]
                    walk(v, (*path, str(k)))
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    doc.lines[(*path, i)] = None  # type: ignore[assignment]
                    walk(v, (*path, i))

        walk(data, ())
        return doc


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _key(node: yaml.Node) -> str:
    """A mapping key as the string the loaded data uses (non-string keys are turned into strings)."""
    if isinstance(node, yaml.ScalarNode):
        try:
            return str(yaml.SafeLoader("").construct_object(node))
        except yaml.YAMLError:
            return str(node.value)
    return f"<{type(node).__name__}>"


def _stringify_keys(value: Any, depth: int = 0) -> Any:
    if depth > 100:
        raise RecursionError
    if isinstance(value, dict):
        return {str(k): _stringify_keys(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v, depth + 1) for v in value]
    return value


def _walk(node: yaml.Node, path: Path_, doc: YamlDoc, depth: int = 0) -> None:
    if depth > 100:
        raise RecursionError
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for k, v in node.value:
            key = _key(k)
            line = k.start_mark.line + 1
            if key in seen:
                doc.problems.append(Problem(format_path((*path, key)), "each key once",
                                            f"a duplicate of the key on line {seen[key]}", line, doc.file,
                                            "Remove one of them."))
            seen[key] = line
            doc.lines[(*path, key)] = line
            _walk(v, (*path, key), doc, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            doc.lines[(*path, i)] = v.start_mark.line + 1
            _walk(v, (*path, i), doc, depth + 1)


def load_yaml(text: str, *, file: str | None = None) -> YamlDoc:
    """Parse YAML text; syntax errors become a Problem (with line) instead of an exception."""
    doc = YamlDoc(data=None, file=file)
    last_line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc.data = _stringify_keys(yaml.safe_load(text)) if node is not None else None
        if node is not None:
            doc.lines[()] = node.start_mark.line + 1
            _walk(node, (), doc)
    except RecursionError:
        doc.data = None
        doc.problems.append(Problem("(document)", "a YAML document without self-referencing anchors/aliases",
                                    "an alias that contains itself (or nesting deeper than 100 levels)", None, file))
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = min(mark.line + 1, last_line) if mark is not None else None
        doc.problems.append(Problem("(document)", "valid YAML", f"a syntax error: {exc.problem or exc}", line,
                                    file, "Check indentation, colons and quotes on that line."))
        return doc
    except yaml.YAMLError as exc:
        doc.problems.append(Problem("(document)", "valid YAML", f"a syntax error: {exc}", None, file))
        return doc
    return doc


def short(value: Any, limit: int = 60) -> str:
    """A short repr of a given value for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """Field names allowed at ``loc[:-1]`` in ``model`` (for did-you-mean on unknown keys). Union members
    are narrowed by pydantic's discriminator tag when the location carries one."""
    cands: list[type[BaseModel]] = [model]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        owners = [m for m in cands if part in m.model_fields]
        if owners:
            cands = [x for m in owners for x in _models_in(m.model_fields[part].annotation)] or cands
            continue
        tagged = [m for m in cands if any(part in getattr(f.annotation, "__args__", ()) for f in m.model_fields.values()
                                          if getattr(f.annotation, "__origin__", None) is Literal)]
        if tagged:
            cands = tagged
    keys: list[str] = []
    for m in cands:
        keys += [k for k in m.model_fields if k not in keys]
    return keys


def _models_in(ann: Any) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for arg in (getattr(ann, "__args__", ()) or ()) for m in _models_in(arg)]


def problems_from_validation(exc: ValidationError, doc: YamlDoc, model: type[BaseModel],
                             prefix: Path_ = ()) -> list[Problem]:
    """Turn every pydantic error into a Problem with key path, line, expected and given."""
    out: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = doc.resolve((*prefix, *loc))
        kind = err["type"]
        given = short(err.get("input"))
        hint = None
        if kind == "extra_forbidden":
            key = str(loc[-1])
            path = (*path, key) if not path or path[-1] != key else path
            allowed = _allowed_keys(model, loc)
            expected = "one of the keys " + ", ".join(allowed) if allowed else "no such key"
            given = f"unknown key '{key}'"
            hint = (did_you_mean(key, allowed).strip() or None)
        elif kind == "missing":
            key = loc[-1]
            path = (*path, key) if not path or path[-1] != key else path
            expected = "this key (required)"
            given = "nothing"
        else:
            expected = _expected(err)
        item = Problem(format_path(path) or "(document)", expected, given, doc.line(path), doc.file, hint)
        if (item.path, item.expected) not in seen:
            seen.add((item.path, item.expected))
            out.append(item)
    return out


def _expected(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", ""))
    for head in ("Value error, ", "Assertion failed, "):
        if msg.startswith(head):
            return msg[len(head):]
    msg = msg.replace("Input should be ", "").replace("Input ", "")
    return msg[0].lower() + msg[1:] if msg else str(err["type"])
