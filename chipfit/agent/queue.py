"""Fair admission for the device agent: each client (by address) holds at most a quota of places, and a freed
measuring slot goes to the clients in turn, not to whoever queued most.

Two stages, each with a total and a per-client limit:

- *uploading*: a request whose body is still arriving. It holds no place in the measuring queue, so a slow
  upload delays only its own sender.
- *queued*: a request whose files are all received and checked, waiting for or holding a measuring slot.

>>> import asyncio
>>> async def demo() -> list[str]:
...     q, order = FairQueue(slots=1), []
...     async def job(client: str, i: int) -> None:
...         async with q.slot(client):
...             order.append(f"{client}{i}")
...             await asyncio.sleep(0)
...     await asyncio.gather(*(job("a", i) for i in range(3)), *(job("b", i) for i in range(2)))
...     return order
>>> asyncio.run(demo())
['a0', 'b0', 'a1', 'b1', 'a2']
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator


class FairQueue:
    """``slots`` measurements at once; waiters are served round-robin across clients (FIFO within a client)."""

    def __init__(self, slots: int) -> None:
        self.free = slots
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._turn = 0
        self._last: dict[str, int] = {}  # client -> the turn it was last served in

    def waiting(self) -> int:
        """How many requests wait for a slot."""
        return sum(len(d) for d in self._waiting.values())

    async def _acquire(self, client: str) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            self._served(client)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(client, deque()).append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # the slot was handed over just as the waiter went away: pass it on
            else:
                self._forget(client, fut)
            raise

    def _served(self, client: str) -> None:
        self._turn += 1
        self._last[client] = self._turn
        if len(self._last) > 4096:  # forget clients that wait for nothing
            self._last = {c: t for c, t in self._last.items() if c in self._waiting or c == client}

    def _forget(self, client: str, fut: asyncio.Future[None]) -> None:
        d = self._waiting.get(client)
        if d is not None:
            with contextlib.suppress(ValueError):
                d.remove(fut)
            if not d:
                del self._waiting[client]

    def _release(self) -> None:
        if not self._waiting:
            self.free += 1
            return
        # The waiting client served longest ago (or never) goes next; ties in order of arrival.
        client = min(self._waiting, key=lambda c: self._last.get(c, 0))
        d = self._waiting[client]
        fut = d.popleft()
        if not d:
            del self._waiting[client]
        self._served(client)
        fut.set_result(None)  # the slot passes straight to this waiter

    @contextlib.asynccontextmanager
    async def slot(self, client: str) -> AsyncIterator[None]:
        """Wait for a measuring slot (fairly), hold it for the block."""
        await self._acquire(client)
        try:
            yield
        finally:
            self._release()


class Quota:
    """Counts per client against a total and a per-client limit (touched only on the event loop).

    >>> q = Quota(total=3, per_client=2)
    >>> q.refusal("a"), q.take("a"), q.take("a"), q.refusal("a")
    (None, None, None, 'client')
    >>> q.take("b"), q.refusal("c")
    (None, 'total')
    """

    def __init__(self, total: int, per_client: int) -> None:
        self.total, self.per_client = total, per_client
        self.held: Counter[str] = Counter()

    def count(self) -> int:
        return sum(self.held.values())

    def refusal(self, client: str) -> str | None:
        """Why ``client`` cannot take one more now: ``"client"`` (its quota), ``"total"`` (all taken), or None."""
        if self.held[client] >= self.per_client:
            return "client"
        if self.count() >= self.total:
            return "total"
        return None

    def take(self, client: str) -> None:
        self.held[client] += 1

    def give(self, client: str) -> None:
        self.held[client] -= 1
        if self.held[client] <= 0:
            del self.held[client]
