"""Tensor-arena planning over tensor lifetimes in execution order.

Two figures: the lower bound (the largest total of tensors alive at any one step) and the arena a
greedy-by-size planner needs (TFLM's ``GreedyMemoryPlanner`` strategy: place the largest buffers first, each
at the lowest offset that does not overlap a buffer alive at the same time).

>>> from chipfit.cost.arena import Buffer, plan
>>> p = plan([Buffer("a", 10, 0, 0), Buffer("b", 1, 0, 1), Buffer("c", 10, 1, 1)])
>>> p.lower_bound, p.arena
(11, 11)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chipfit.graph.opgraph import OpGraph


@dataclass(frozen=True)
class Buffer:
    """A tensor buffer alive from step ``first`` to step ``last`` (inclusive)."""

    name: str
    size: int
    first: int
    last: int


@dataclass(frozen=True)
class ArenaPlan:
    buffers: tuple[Buffer, ...]
    offsets: dict[str, int]
    lower_bound: int
    arena: int
    live_bytes: tuple[int, ...]  # total bytes alive at each step

    def to_dict(self) -> dict[str, object]:
        return {
            "lower_bound": self.lower_bound,
            "arena": self.arena,
            "buffers": [
                {"name": b.name, "size": b.size, "first": b.first, "last": b.last, "offset": self.offsets[b.name]}
                for b in self.buffers
            ],
        }


def buffers(graph: OpGraph, nbytes: Callable[[str], int]) -> list[Buffer]:
    """Buffers of ``graph``'s activation tensors; reshape-like ops share their input's buffer."""
    root: dict[str, str] = {}

    def find(t: str) -> str:
        while t in root:
            t = root[t]
        return t

    for n in graph.nodes:
        if n.op.is_alias and n.inputs:
            for o in n.outputs:
                root[o] = n.inputs[0]
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    end = max(len(graph.nodes) - 1, 0)
    for t in graph.inputs:
        first[find(t)] = 0
        last[find(t)] = 0
    for i, n in enumerate(graph.nodes):
        for t in n.inputs:
            r = find(t)
            first.setdefault(r, i)
            last[r] = max(last.get(r, i), i)
        for t in n.outputs:
            r = find(t)
            first.setdefault(r, i)
            last[r] = max(last.get(r, i), i)
    for t in graph.outputs:
        last[find(t)] = end
    return [Buffer(r, nbytes(r), first[r], last[r]) for r in first]


def plan(bufs: Sequence[Buffer]) -> ArenaPlan:
    """Plan offsets greedily by size and compute the lifetime lower bound."""
    steps = max((b.last for b in bufs), default=-1) + 1
    live = [0] * steps
    for b in bufs:
        for s in range(b.first, b.last + 1):
            live[s] += b.size
    offsets: dict[str, int] = {}
    placed: list[tuple[int, int, Buffer]] = []
    for b in sorted(bufs, key=lambda x: (-x.size, x.first)):
        clashes = sorted((off, off + p.size) for off, _, p in placed if p.first <= b.last and b.first <= p.last)
        offset = 0
        for lo, hi in clashes:
            if offset + b.size <= lo:
                break
            offset = max(offset, hi)
        offsets[b.name] = offset
        placed.append((offset, b.size, b))
    arena = max((o + s for o, s, _ in placed), default=0)
    return ArenaPlan(tuple(bufs), offsets, max(live, default=0), arena, tuple(live))
