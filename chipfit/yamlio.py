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
MAX_BYTES = 1 << 20  # 1 MiB: a contract names its data by path; larger documents are refused unread
ALIAS_BUDGET = 10_000  # values that aliases may add when expanded ("billion laughs" guard)
MAX_DEPTH = 100  # nesting levels
MAX_PROBLEMS = 50  # problems listed at once; the rest are counted
_REPARSE_CHARS = 256 * 1024  # syntax errors in smaller documents are worded by PyYAML
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~8x faster, nesting capped at 1000 in C


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


def _key(node: yaml.Node, constructor: yaml.constructor.SafeConstructor) -> str:
    """A mapping key as the string the loaded data uses (non-string keys are turned into strings)."""
    if isinstance(node, yaml.ScalarNode):
        try:
            return str(constructor.construct_object(node))
        except yaml.YAMLError:
            return str(node.value)
    return f"<{type(node).__name__}>"


def _stringify_keys(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise RecursionError
    if isinstance(value, dict):
        return {str(k): _stringify_keys(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v, depth + 1) for v in value]
    return value


def _walk(node: yaml.Node, path: Path_, doc: YamlDoc, constructor: yaml.constructor.SafeConstructor,
          depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise RecursionError
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for k, v in node.value:
            key = _key(k, constructor)
            line = k.start_mark.line + 1
            if key in seen:
                doc.problems.append(Problem(format_path((*path, key)), "each key once",
                                            f"a duplicate of the key on line {seen[key]}", line, doc.file,
                                            "Remove one of them."))
            seen[key] = line
            doc.lines[(*path, key)] = line
            _walk(v, (*path, key), doc, constructor, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            doc.lines[(*path, i)] = v.start_mark.line + 1
            _walk(v, (*path, i), doc, constructor, depth + 1)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def expanded_size(root: yaml.Node) -> tuple[int, int, int] | None:
    """``(distinct nodes, nodes once every alias is expanded, depth)`` of a composed YAML document, or None
    when an alias contains itself. Iterative and linear in the distinct nodes, so a "billion laughs"
    document is measured without being expanded.

    >>> expanded_size(yaml.compose("a: &x [1, 2]\\nb: [*x, *x]\\n"))
    (7, 13, 4)
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, list[yaml.Node] | None]] = [(root, None)]
    while stack:
        node, kids = stack.pop()
        key = id(node)
        if kids is not None:  # second visit: every child is measured
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in kids)
            height[key] = 1 + max((height[id(c)] for c in kids), default=0)
            continue
        if key in size:
            continue
        if key in on_path:
            return None
        kids = _children(node)
        if not kids:
            size[key], height[key] = 1, 1
            continue
        on_path.add(key)
        stack.append((node, kids))
        stack.extend((c, None) for c in reversed(kids))
    return len(size), size[id(root)], height[id(root)]


def _compose(text: str) -> yaml.Node | None:
    """Compose with libyaml; on a syntax error, compose again with PyYAML, whose messages name the character
    (``found character '\\t' that cannot start any token``)."""
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        if _LOADER is yaml.SafeLoader or len(text) > _REPARSE_CHARS:
            raise
        return yaml.compose(text, Loader=yaml.SafeLoader)


def load_yaml(text: str, *, file: str | None = None, max_bytes: int = MAX_BYTES) -> YamlDoc:
    """Parse YAML text; syntax errors become a Problem (with line) instead of an exception.

    Documents over ``max_bytes``, aliases that would expand by more than :data:`ALIAS_BUDGET` values
    ("billion laughs") and nesting deeper than :data:`MAX_DEPTH` are refused as a Problem before anything
    is expanded.

    >>> load_yaml("a: &a [x, x]\\nb: &b [*a, *a]\\nc: [*b, *b]\\n").problems
    []
    >>> bomb = "a: &a [x,x,x,x,x,x,x,x,x]\\n" + "".join(
    ...     f"{k}: &{k} [{', '.join(['*' + p] * 9)}]\\n" for p, k in zip("abcdef", "bcdefg"))
    >>> print(load_yaml(bomb).problems[0].given)  # doctest: +ELLIPSIS
    aliases that expand 24 values to 6,053,451 values
    """
    doc = YamlDoc(data=None, file=file)
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        doc.problems.append(Problem("(document)", f"a contract of at most {max_bytes:,} bytes",
                                    f"{size:,} bytes", None, file,
                                    "A contract describes data by path; keep the data itself out of it."))
        return doc
    last_line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
    try:
        node = _compose(text)
        if node is None:
            return doc
        measured = expanded_size(node)
        if measured is None or measured[2] > MAX_DEPTH:
            raise RecursionError
        distinct, expanded, _ = measured
        if expanded - distinct > ALIAS_BUDGET:
            doc.problems.append(Problem(
                "(document)", f"aliases (*name) that add at most {ALIAS_BUDGET:,} values when expanded",
                f"aliases that expand {distinct:,} values to {expanded:,} values", node.start_mark.line + 1,
                file, "Write the values out, or reuse fewer nested anchors."))
            return doc
        constructor = yaml.constructor.SafeConstructor()
        doc.lines[()] = node.start_mark.line + 1
        _walk(node, (), doc, constructor)  # before constructing: merge keys (<<) rewrite the node in place
        doc.data = _stringify_keys(constructor.construct_document(node))
    except RecursionError:
        doc.data = None
        doc.lines.clear()
        doc.problems.append(Problem("(document)", "a YAML document without self-referencing anchors/aliases",
                                    f"an alias that contains itself (or nesting deeper than {MAX_DEPTH} levels)",
                                    None, file))
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = min(mark.line + 1, last_line) if mark is not None else None
        what = exc.problem or str(exc)
        if isinstance(exc, yaml.composer.ComposerError) and exc.context:  # "found duplicate anchor 'a'; ..."
            where = f" (line {exc.context_mark.line + 1})" if exc.context_mark is not None else ""
            what = f"{exc.context}{where}, {what}"
        doc.problems.append(Problem("(document)", "valid YAML", f"a syntax error: {what}", line,
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
                             prefix: Path_ = (), *, limit: int | None = MAX_PROBLEMS) -> list[Problem]:
    """Turn every pydantic error into a Problem with key path, line, expected and given.

    Only the first ``limit`` errors (in document order) get "did you mean" hints and the list of allowed keys;
    the rest are counted with a plain Problem each, so a document with 100,000 unknown keys stays fast.
    """
    out: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    errors = []
    for err in exc.errors(include_url=False, include_context=False):
        path = doc.resolve((*prefix, *err["loc"]))
        errors.append((doc.line(path) or 0, len(errors), path, err))
    errors.sort(key=lambda e: e[:2])
    for k, (_, _, path, err) in enumerate(errors):
        loc = tuple(err["loc"])
        full = limit is None or k < limit
        kind = err["type"]
        given = short(err.get("input"))
        hint = None
        if kind == "extra_forbidden":
            key = str(loc[-1])
            path = (*path, key) if not path or path[-1] != key else path
            allowed = _allowed_keys(model, loc) if full else []
            expected = "one of the keys " + ", ".join(allowed) if allowed else "a known key"
            given = f"unknown key '{key}'"
            hint = (did_you_mean(key, allowed).strip() or None) if full else None
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


def cap_problems(problems: Sequence[Problem], limit: int = MAX_PROBLEMS) -> list[Problem]:
    """Problems in document order, at most ``limit`` of them plus one that counts the rest ("… and N more").

    >>> ps = [Problem(f"k{i}", "nothing", "x", i + 1) for i in range(60)]
    >>> capped = cap_problems(ps, 50)
    >>> len(capped), capped[-1].given
    (51, '… and 10 more problems (fix these and check again)')
    """
    ordered = sorted(problems, key=lambda p: (p.line or 0, p.path))
    if len(ordered) <= limit:
        return ordered
    rest = len(ordered) - limit
    file = next((p.file for p in ordered if p.file), None)
    return [*ordered[:limit], Problem("(document)", f"at most {limit} problems listed at once",
                                      f"… and {rest:,} more problem{'s' if rest != 1 else ''} "
                                      "(fix these and check again)", None, file)]


def _expected(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", ""))
    for head in ("Value error, ", "Assertion failed, "):
        if msg.startswith(head):
            return msg[len(head):]
    msg = msg.replace("Input should be ", "").replace("Input ", "")
    return msg[0].lower() + msg[1:] if msg else str(err["type"])
