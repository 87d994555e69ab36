"""The numbered sources behind the device facts: ``"[16] nRF52840 PS"`` in a profile cites entry 16 of
``knowledge/references.yaml``, shipped inside the package (title, URL, what the source supports).

>>> from chipfit.targets.references import cited, references
>>> cited("[16] nRF52840 PS: 256 KB RAM", "der.: 3.3 mA x 3.0 V [16][35]")
[16, 35]
>>> ref = references()[16]
>>> ref.title.startswith("Nordic nRF52840 Product Specification"), ref.url.startswith("https://")
(True, True)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from chipfit.errors import ChipfitError

#: A numbered citation: ``[16]``, also chained as ``[1][2]``.
CITATION = re.compile(r"\[(\d{1,3})\]")
FILE = "knowledge/references.yaml"


@dataclass(frozen=True)
class Reference:
    """One numbered source: its title, where to read it, and which chipfit figures rest on it."""

    number: int
    title: str
    url: str
    supports: str

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "title": self.title, "url": self.url, "supports": self.supports}


@functools.cache
def references() -> dict[int, Reference]:
    """Every numbered source, by number."""
    data = yaml.safe_load(resources.files("chipfit.targets").joinpath(FILE).read_text(encoding="utf-8"))
    return {int(n): Reference(int(n), e["title"], e["url"], e["supports"]) for n, e in data.items()}


def cited(*texts: str | None) -> list[int]:
    """The numbers cited as ``[n]`` in ``texts``, sorted, each once."""
    return sorted({int(m) for t in texts if t for m in CITATION.findall(t)})


def resolve(numbers: Iterable[int], *, strict: bool = True) -> list[Reference]:
    """The entries for ``numbers``; a number with no entry is an error naming the file to add it to (with
    ``strict=False`` it is left out)."""
    refs = references()
    numbers = list(numbers)
    missing = [n for n in numbers if n not in refs]
    if missing and not strict:
        return [refs[n] for n in numbers if n in refs]
    if missing:
        raise ChipfitError(f"citation{'s' if len(missing) > 1 else ''} {', '.join(f'[{n}]' for n in missing)} "
                           f"resolve to no entry of chipfit/targets/{FILE}; expected an entry (title, url, supports) "
                           "for every numbered source a profile or knowledge file cites.")
    return [refs[n] for n in numbers]


def target_texts(target: Any) -> list[str]:
    """The texts of a target that cite these sources: each fact's source, the description and the notes of a
    built-in profile (a user's target file numbers its own sources), and the efficiency source of each of its
    runtimes (chipfit's knowledge files)."""
    from chipfit.targets.knowledge import efficiency

    own = [*target.sources.values(), target.description or "", target.notes or ""]
    texts = own if target.origin == "builtin" else []
    for r in target.runtimes:
        try:
            texts.append(efficiency(target.core, r).source)
        except KeyError:
            continue
    return texts


def references_for(target: Any) -> list[Reference]:
    """The numbered sources a target's facts cite (see :func:`target_texts`), in number order.

    >>> from chipfit.targets import create_target
    >>> 16 in [r.number for r in references_for(create_target("nrf52840"))]
    True
    """
    return resolve(cited(*target_texts(target)))
