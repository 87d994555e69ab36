"""YAML loading that remembers where every key sits, and pydantic errors turned into located Problems.

>>> doc = load_yaml("a:\\n  b: 1\\n", file="x.yaml")
>>> doc.data, doc.line(("a", "b"))
({'a': {'b': 1}}, 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
                best = self.lines[cur]
        return best

    def resolve(self, loc: Sequence[str | int]) -> Path_:
        """Drop pydantic's union / discriminator tags from ``loc``, keeping real key paths."""
        cur: Path_ = ()
        for part in loc:
            if (*cur, part) in self.lines:
                cur = (*cur, part)
        return cur

    def problem(self, path: Sequence[str | int], expected: str, given: str, hint: str | None = None) -> Problem:
        return Problem(format_path(path), expected, given, self.line(path), self.file, hint)


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _walk(node: yaml.Node, path: Path_, doc: YamlDoc) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            line = k.start_mark.line + 1
            if key in seen:
                doc.problems.append(Problem(format_path((*path, key)), "each key once",
                                            f"a duplicate of the key on line {seen[key]}", line, doc.file,
                                            "Remove one of them."))
            seen[key] = line
            doc.lines[(*path, key)] = line
            _walk(v, (*path, key), doc)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            doc.lines[(*path, i)] = v.start_mark.line + 1
            _walk(v, (*path, i), doc)


def load_yaml(text: str, *, file: str | None = None) -> YamlDoc:
    """Parse YAML text; syntax errors become a Problem (with line) instead of an exception."""
    doc = YamlDoc(data=None, file=file)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc.data = yaml.safe_load(text) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        doc.problems.append(Problem("(document)", "valid YAML", f"a syntax error: {exc.problem or exc}", line,
                                    file, "Check indentation, colons and quotes on that line."))
        return doc
    except yaml.YAMLError as exc:
        doc.problems.append(Problem("(document)", "valid YAML", f"a syntax error: {exc}", None, file))
        return doc
    if node is not None:
        doc.lines[()] = node.start_mark.line + 1
        _walk(node, (), doc)
    return doc


def short(value: Any, limit: int = 60) -> str:
    """A short repr of a given value for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """Field names allowed at ``loc[:-1]`` in ``model`` (for did-you-mean on unknown keys)."""
    cur: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or cur is None:
            continue
        fields = getattr(cur, "model_fields", None)
        if not fields or part not in fields:
            continue
        ann = fields[part].annotation
        cur = _model_in(ann)
    fields = getattr(cur, "model_fields", None)
    return list(fields) if fields else []


def _model_in(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


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
        item = Problem(format_path(path), expected, given, doc.line(path), doc.file, hint)
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
