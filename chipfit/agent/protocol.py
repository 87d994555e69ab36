"""Connection deadlines for the device agent, below the ASGI app: uvicorn's HTTP/1.1 protocol (h11) with two
timers it lacks.

- **Headers**: a request head must be complete within ``header_timeout_s`` of the connection opening (or of the
  previous response on a kept-alive connection). uvicorn arms no timer before the first request, and cancels its
  keep-alive timer on any byte received, so a client that sends half a header would hold the connection for ever.
  Past the deadline the agent answers ``408`` (if any bytes came) and closes.
- **Unread body**: when the app answered before the request body arrived (401, 413, 429, 503 are sent without
  reading it), uvicorn keeps reading and discarding the body; a client that trickles it would hold the
  connection for ever. The rest of the body must arrive within ``drain_timeout_s`` of the response, else the
  connection is closed.

A body the app *is* reading is timed by the app (:class:`chipfit.agent.server` answers ``408`` when the upload
stalls or runs past its limit). Header size is bounded by h11 (16 KiB by default).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from chipfit.logging import get_logger

log = get_logger(__name__)


def timeout_response(detail: str) -> bytes:
    """A complete ``408`` response with a JSON body, closing the connection."""
    body = json.dumps({"error": "request timeout", "detail": detail}).encode()
    head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % len(body))
    return head + body


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the header and unread-body deadlines of the module docstring. Use
    :func:`protocol_class` to set the deadlines."""

    header_timeout_s: ClassVar[float] = 10.0
    drain_timeout_s: ClassVar[float] = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = ""
        self._bytes_in_phase = 0
        self._seen_cycle: Any = None
        self._arm("headers")

    def _arm(self, phase: str) -> None:
        self._disarm()
        self._phase, self._bytes_in_phase = phase, 0
        seconds = self.header_timeout_s if phase == "headers" else self.drain_timeout_s
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, ""

    def data_received(self, data: bytes) -> None:
        self._bytes_in_phase += len(data)
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            # A request head is complete: the app owns the request now (and times the body it reads).
            self._seen_cycle = self.cycle
            self._disarm()
        elif self._phase == "body" and self.conn.their_state is not h11.SEND_BODY:
            self._arm("headers")  # the unread body is over; now the next request's head must come in time

    def on_response_complete(self) -> None:
        current = self.cycle
        super().on_response_complete()
        if self.transport.is_closing():
            self._disarm()
        elif self.cycle is not current:  # a pipelined request started at once
            self._seen_cycle = self.cycle
            self._disarm()
        elif self.conn.their_state is h11.SEND_BODY:
            self._arm("body")
        else:
            self._arm("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _expire(self) -> None:
        phase, self._deadline = self._phase, None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        if phase == "headers":
            if self._bytes_in_phase:
                self.transport.write(timeout_response(
                    f"the request head (method, path, headers) did not arrive within {self.header_timeout_s:g} s; "
                    "send the whole head at once."))
            log.info("%s: closed a connection whose request head did not arrive within %g s (%d bytes came)",
                     client, self.header_timeout_s, self._bytes_in_phase)
        else:
            log.info("%s: closed a connection whose unread request body did not arrive within %g s of the "
                     "answer", client, self.drain_timeout_s)
        self.transport.close()


def protocol_class(header_timeout_s: float, drain_timeout_s: float) -> type[DeadlineH11Protocol]:
    """A :class:`DeadlineH11Protocol` with these deadlines, for ``uvicorn.Config(http=...)``.

    >>> protocol_class(5, 7).header_timeout_s
    5
    """
    return type("AgentH11Protocol", (DeadlineH11Protocol,), {"header_timeout_s": header_timeout_s,
                                                             "drain_timeout_s": drain_timeout_s})
