"""The device agent (``chipfit agent``): a small HTTP service that runs on the edge device, takes model files,
times them with the device's own runtime and returns :class:`~chipfit.measure.record.Measurement` records.

Endpoints (every error is JSON ``{"error": ..., "detail": ...}``):

- ``GET /health`` (no token): ``{"status": "ok"}``.
- ``GET /facts``: the device, OS, CPUs, RAM, runtimes and their versions, the agent's limits, chipfit's version.
- ``POST /measure``: multipart form with one or more files ``models`` (ONNX or TFLite) and an optional JSON field
  ``spec`` (:class:`MeasureSpec`). All models of one request are timed interleaved, in one child process.

Defences, in the order a request meets them:

- the request head must arrive within ``header_timeout_s`` (408, connection closed), and a body the agent did
  not read must arrive within ``body_timeout_s`` of the answer (connection closed): :mod:`chipfit.agent.protocol`;
- the token (``Authorization: Bearer``, compared in constant time) is checked before any of the body is read
  (401); a declared ``Content-Length`` above the upload limit is refused before reading (413), and streamed
  bytes are counted against the same limit (413);
- uploads: each client (by address) may send ``per_client`` at once (429 beyond), all clients together
  ``max_uploads`` (503); an upload that stalls for ``body_timeout_s`` or lasts past ``upload_timeout_s`` is cut
  off (408, connection closed). An upload holds no place in the measuring queue;
- the measuring queue, entered only once the whole body is in: ``max_concurrent`` measurements run and
  ``max_queue`` wait, at most ``per_client`` of them from one client (429), others get 503 with ``Retry-After``
  at once; a freed slot goes to the waiting client served longest ago (:mod:`chipfit.agent.queue`);
- uploads are written only into a fresh subdirectory of the agent's own working directory, under names the
  agent chooses, and removed afterwards; every file must pass :func:`~chipfit.agent.validate.validate_model_bytes`
  (400: no external data anywhere in the graph, judged without touching the filesystem; then
  :func:`~chipfit.measure.modelfile.inspect_model_bytes`) before a runtime sees it;
- the measurement runs in a child process (:mod:`chipfit.agent.worker`) whose address space is capped at
  ``max_memory_mb`` (507 past it) and which is killed at the time limit (504); a failure inside it is reported
  (422, 500, 507), never fatal to the agent.

>>> from fastapi.testclient import TestClient
>>> app = create_app("s3cret-token-for-the-doctest")
>>> with TestClient(app) as client:
...     print(client.get("/health").json(), client.get("/facts").status_code)
...     facts = client.get("/facts", headers={"Authorization": "Bearer s3cret-token-for-the-doctest"}).json()
{'status': 'ok'} 401
>>> facts["limits"]["max_concurrent"], "onnxruntime" in facts["runtimes"]
(1, True)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from chipfit.agent.client import SPEC_BOUNDS
from chipfit.agent.queue import FairQueue, Quota
from chipfit.agent.worker import RESULT_FILE, SPEC_FILE, memory_limit_method, out_of_memory, write_json
from chipfit.errors import MeasurementError, UsageError
from chipfit.logging import get_logger
from chipfit.measure.base import ESTIMATORS, host_device
from chipfit.naming import did_you_mean

log = get_logger(__name__)

MiB = 1024 * 1024
MAX_SPEC_BYTES = 16 * 1024
OPEN_PATHS = frozenset({"/health"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class MeasureSpec(BaseModel):
    """The measurement settings a client may send as the ``spec`` form field (JSON); unknown keys are refused.

    >>> MeasureSpec.model_validate_json('{"rounds": 3}').runs
    20
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    rounds: int = Field(5, ge=SPEC_BOUNDS["rounds"][0], le=SPEC_BOUNDS["rounds"][1])
    runs: int = Field(20, ge=SPEC_BOUNDS["runs"][0], le=SPEC_BOUNDS["runs"][1])
    warmup: int = Field(5, ge=SPEC_BOUNDS["warmup"][0], le=SPEC_BOUNDS["warmup"][1])
    estimator: Literal[ESTIMATORS] = "min"  # type: ignore[valid-type]
    memory: bool = False
    energy: bool = False  # RAPL on the device, where readable
    profile: bool = False  # also per-node profile times (ONNX models), for calibration
    seed: int = Field(0, ge=SPEC_BOUNDS["seed"][0], le=SPEC_BOUNDS["seed"][1])


def default_max_memory_mb() -> int:
    """The default cap on one measuring process: 1 GiB of address space, or half the device's RAM if that is
    less (at least 256 MiB). Python and ONNX Runtime take about 0.3 GB of it themselves."""
    try:
        ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MiB
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 1024
    return int(max(256, min(1024, ram_mb // 2)))


@dataclass(frozen=True)
class AgentLimits:
    """What one agent accepts: total upload bytes per request, models per request, measurements running at
    once and waiting, places one client may hold (uploading, and queued or measuring), uploads at once, seconds
    per measurement, runtime threads, memory per measuring process (MiB of address space), and the connection
    deadlines: request head, body stall, whole upload.

    >>> AgentLimits(max_upload_bytes=MiB).to_dict()["max_upload_bytes"]
    1048576
    >>> AgentLimits(max_concurrent=0)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    chipfit.errors.UsageError: agent limit max_concurrent must be >= 1; given 0.
    """

    max_upload_bytes: int = 64 * MiB
    max_models: int = 64
    max_concurrent: int = 1
    max_queue: int = 8
    per_client: int = 2
    max_uploads: int = 8
    timeout_s: float = 120.0
    threads: int = 1
    max_memory_mb: int = field(default_factory=default_max_memory_mb)
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    upload_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        for k in ("max_upload_bytes", "max_models", "max_concurrent", "threads", "per_client", "max_uploads"):
            if getattr(self, k) < 1:
                raise UsageError(f"agent limit {k} must be >= 1; given {getattr(self, k)}.")
        if self.max_memory_mb < 64:
            raise UsageError(f"agent limit max_memory_mb must be >= 64 (Python and the runtime alone take about "
                             f"300 MiB of address space); given {self.max_memory_mb}.")
        for k in ("timeout_s", "header_timeout_s", "body_timeout_s", "upload_timeout_s"):
            if not getattr(self, k) > 0:
                raise UsageError(f"agent limit {k} must be > 0 seconds; given {getattr(self, k)}.")
        if self.max_queue < 0:
            raise UsageError(f"agent limit max_queue must be >= 0; given {self.max_queue}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def memory_limit_bytes(self) -> int:
        return int(self.max_memory_mb) * MiB


# On the 408s for a stalled upload (the client sends nothing more, so closing cannot cut off the answer). Other
# answers sent before the body is read keep the connection open: closing it with the body unread would make the
# kernel answer with a reset, and the client would see that instead of the answer; the protocol's drain deadline
# (chipfit.agent.protocol) closes it if the rest of the body does not come.
CLOSE = {"Connection": "close"}


class _Reject(Exception):
    """A request refused with a JSON error (raised inside the agent, turned into a response)."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


class _TooLarge(Exception):
    """The streamed body passed the upload limit."""


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def _send_error(send: Send, status: int, error: str, detail: str,
                      headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _Guard:
    """Pure ASGI middleware in front of every route: token check and upload limit before the body is read,
    streamed-byte counting while it is read, and one log line per request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, token: str,
                 max_body: int, body_timeout_s: float) -> None:
        self.app, self._token, self.max_body, self.body_timeout_s = app, token.encode(), max_body, body_timeout_s

    def _authorised(self, header: bytes | None) -> bool:
        scheme, _, given = (header or b"").partition(b" ")
        # Compare even when the scheme is wrong, so the answer takes the same time.
        ok = hmac.compare_digest(given.strip(), self._token)
        return ok and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, state = time.perf_counter(), {"status": 0}

        async def send_seen(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)

        try:
            await self._guard(scope, receive, send_seen, state)
        finally:
            client = scope.get("client") or ("?", 0)
            log.info("%s %s %s -> %s in %.0f ms", client[0], scope["method"], scope["path"], state["status"] or "-",
                     (time.perf_counter() - t0) * 1e3)

    async def _guard(self, scope: Scope, receive: Receive, send: Send, state: dict[str, int]) -> None:
        headers = dict(scope["headers"])
        if scope["path"] not in OPEN_PATHS and not self._authorised(headers.get(b"authorization")):
            given = "no Authorization header" if b"authorization" not in headers else "a wrong token"
            await _send_error(send, 401, "unauthorized",
                              f"expected 'Authorization: Bearer <token>' with the agent's token; given {given}.",
                              {"WWW-Authenticate": "Bearer"})
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                await _send_error(send, 400, "bad request", f"Content-Length must be an integer; given {declared!r}.")
                return
            if n > self.max_body:
                # The connection stays open: closing it with the body unread would make the kernel answer with a
                # reset, and the client would see that instead of this 413; uvicorn discards the rest of the body.
                await _send_error(send, 413, "upload too large", self._too_large(f"{n:,} bytes declared"))
                return
        seen, more = 0, True

        async def counted() -> Message:
            nonlocal seen, more
            if not more:  # the body is in; what comes now is a disconnect, whenever it comes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                raise _Reject(408, "upload stalled", f"no bytes of the request body arrived for "
                                                     f"{self.body_timeout_s:g} s; the agent closed the connection. "
                                                     "Send the whole body without pauses.", CLOSE) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                more = bool(message.get("more_body", False))
                if seen > self.max_body:
                    raise _TooLarge
            else:
                more = False
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            if state["status"]:
                raise
            await _send_error(send, 413, "upload too large", self._too_large(f"more than {self.max_body:,} bytes "
                                                                              "streamed"))

    def _too_large(self, given: str) -> str:
        return (f"the agent accepts at most {self.max_body:,} bytes per request (all files together); given "
                f"{given}. Send fewer or smaller models per request, or start the agent with a larger "
                "--max-upload-mb.")


@dataclass
class _Upload:
    """What one multipart body held: model files written into the request directory, and the spec."""

    models: list[tuple[str, str]] = field(default_factory=list)  # (file name in the request dir, shown name)
    spec: bytes | None = None


def _shown_name(filename: str | None, i: int) -> str:
    """A display name from the client's filename (last path component, printable, short); never a path."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable()).strip()[:120]
    return base if base not in ("", ".", "..") else f"model-{i}"


class _FormReader:
    """Streams a multipart body: each ``models`` part straight into ``model-<i>`` in the request directory,
    the ``spec`` part into memory (at most :data:`MAX_SPEC_BYTES`)."""

    def __init__(self, req_dir: Path, max_models: int) -> None:
        self.req_dir, self.max_models = req_dir, max_models
        self.upload = _Upload()
        self._headers: list[tuple[bytes, bytes]] = []
        self._hname = self._hvalue = b""
        self._file: Any = None
        self._spec: bytearray | None = None

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {"on_part_begin": self._begin, "on_header_field": self._hfield, "on_header_value": self._hval,
                "on_header_end": self._hend, "on_headers_finished": self._headers_done,
                "on_part_data": self._data, "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers, self._file, self._spec = [], None, None

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _hval(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _hend(self) -> None:
        self._headers.append((self._hname.lower(), self._hvalue))
        self._hname = self._hvalue = b""

    def _headers_done(self) -> None:
        disposition = dict(self._headers).get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == "models":
            i = len(self.upload.models)
            if i >= self.max_models:
                raise _Reject(400, "too many models", f"the agent measures at most {self.max_models} models per "
                                                      "request; send the rest in another request.")
            filename = options.get(b"filename")
            local = f"model-{i}"
            self._file = open(self.req_dir / local, "xb")  # noqa: SIM115 (closed in _end or close())
            self.upload.models.append((local, _shown_name(filename.decode("utf-8", "replace") if filename else None,
                                                          i)))
        elif name == "spec":
            if self.upload.spec is not None:
                raise _Reject(400, "bad request", "the form holds two 'spec' fields; send one JSON object.")
            self._spec = bytearray()
        else:
            raise _Reject(400, "bad request", f"unknown form field '{name}': expected files in 'models' and "
                                              "optionally one JSON field 'spec'." + did_you_mean(name, ["models",
                                                                                                        "spec"]))

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
        elif self._spec is not None:
            self._spec += data[start:end]
            if len(self._spec) > MAX_SPEC_BYTES:
                raise _Reject(400, "bad spec", f"the 'spec' field is longer than {MAX_SPEC_BYTES:,} bytes; send a "
                                               "small JSON object such as {\"rounds\": 5, \"runs\": 20}.")

    def _end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._spec is not None:
            self.upload.spec = bytes(self._spec)
            self._spec = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def _read_upload(request: Request, req_dir: Path, max_models: int) -> _Upload:
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise _Reject(415, "unsupported media type", "expected a multipart/form-data body with files in 'models' "
                                                     f"and optionally a JSON field 'spec'; given Content-Type "
                                                     f"'{request.headers.get('content-type', '(none)')}'.")
    reader = _FormReader(req_dir, max_models)
    parser = MultipartParser(params[b"boundary"], reader.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as e:
        raise _Reject(400, "bad request", f"the multipart body does not parse: {e}.") from None
    except ClientDisconnect:
        raise _Reject(400, "client disconnected", "the client went away during the upload.") from None
    finally:
        reader.close()
    if not reader.upload.models:
        raise _Reject(400, "no model", "expected one or more ONNX or TFLite files in the form field 'models'; "
                                       "given none.")
    return reader.upload


def _parse_spec(raw: bytes | None) -> MeasureSpec:
    if raw is None or not raw.strip():
        return MeasureSpec()
    try:
        return MeasureSpec.model_validate_json(raw)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        if any(x["type"] == "json_invalid" for x in errors):
            raise _Reject(400, "bad spec", f"the 'spec' field is not valid JSON ({errors[0]['msg']}); expected an "
                                           "object such as {\"rounds\": 5, \"runs\": 20}.") from None
        parts = []
        for x in errors:
            where = ".".join(map(str, x["loc"])) or "(spec)"
            if x["type"] == "extra_forbidden":
                parts.append(f"{where}: unknown key; expected one of {', '.join(MeasureSpec.model_fields)}."
                             + did_you_mean(where, MeasureSpec.model_fields))
            else:
                parts.append(f"{where}: {x['msg']}; given {x.get('input')!r}")
        raise _Reject(422, "invalid spec", "; ".join(parts)) from None


def _validate_models(req_dir: Path, upload: _Upload) -> None:
    from chipfit.agent.validate import validate_model_bytes

    for local, shown in upload.models:
        try:
            validate_model_bytes((req_dir / local).read_bytes(), name=shown)
        except MeasurementError as e:
            raise _Reject(400, "not a model", str(e)) from None


def _dist_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def device_facts(limits: AgentLimits) -> dict[str, Any]:
    """What this device is and runs: the ``/facts`` answer.

    >>> facts = device_facts(AgentLimits())
    >>> facts["device"] == host_device(), facts["limits"]["max_queue"]
    (True, 8)
    """
    import importlib.util

    from chipfit import __version__

    runtimes: dict[str, str | None] = {}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        runtimes["onnxruntime"] = onnxruntime.__version__
    if importlib.util.find_spec("ai_edge_litert") is not None:
        runtimes["litert"] = _dist_version("ai-edge-litert")
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        ram = None
    method = memory_limit_method()
    return {"device": host_device(), "hostname": platform.node(), "os": platform.platform(),
            "machine": platform.machine(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "ram_bytes": ram, "runtimes": runtimes, "limits": limits.to_dict(), "chipfit": __version__,
            "memory_limit": method or "not enforced: this system has no setrlimit(RLIMIT_AS)"}


class _Agent:
    """The agent's mutable state: uploads and queue places per client, fair measuring slots, running child
    processes (the counters are touched only on the event loop)."""

    def __init__(self, limits: AgentLimits, workdir: Path, own_workdir: bool) -> None:
        self.limits, self.workdir, self.own_workdir = limits, workdir, own_workdir
        self.facts = device_facts(limits)
        self.lite = {k: self.facts[k] for k in ("device", "os", "chipfit")}
        self.uploads = Quota(limits.max_uploads, limits.per_client)  # bodies still arriving
        self.queued = Quota(limits.max_concurrent + limits.max_queue, limits.per_client)  # waiting or measuring
        self.slots = FairQueue(limits.max_concurrent)
        self.procs: set[subprocess.Popen[bytes]] = set()
        self.mean_s = 2.0  # running mean of measurement seconds, for Retry-After

    def retry_after(self, ahead: int | None = None) -> str:
        n = self.queued.count() if ahead is None else ahead
        return str(max(1, math.ceil(self.mean_s * max(1, n) / self.limits.max_concurrent)))

    def state(self) -> dict[str, int]:
        """Live counts, for ``/facts``: uploading, queued (waiting or measuring), waiting for a slot."""
        return {"uploading": self.uploads.count(), "queued": self.queued.count(), "waiting": self.slots.waiting()}

    def run_child(self, req_dir: Path) -> tuple[int | None, str]:
        """Run the worker on ``req_dir`` (blocking; called in a thread); ``(None, "")`` when it timed out."""
        import chipfit

        env = dict(os.environ)
        src = str(Path(chipfit.__file__).resolve().parents[1])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["TMPDIR"] = str(req_dir)  # anything the worker writes (fresh-process memory probes) stays in req_dir
        proc = subprocess.Popen([sys.executable, "-P", "-m", "chipfit.agent.worker", str(req_dir)],
                                cwd=req_dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        self.procs.add(proc)
        try:
            _, err = proc.communicate(timeout=self.limits.timeout_s)
            return proc.returncode, err.decode("utf-8", "replace")[-2000:]
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.communicate()
            return None, ""
        finally:
            self.procs.discard(proc)

    def shutdown(self) -> None:
        for proc in list(self.procs):
            _kill(proc)
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the worker and anything it started (its own session), by its process id."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - not POSIX
            proc.kill()


def _refuse(agent: _Agent, why: str, quota: Quota, stage: str, client: str) -> _Reject:
    """The 429 (this client's quota) or 503 (everyone's) answer for a request that cannot be taken now."""
    lim = agent.limits
    if why == "client":
        return _Reject(429, "too many requests from this client",
                       f"this client ({client}) already has {quota.held[client]} requests {stage}; the agent lets "
                       f"each client hold at most {lim.per_client} at once, so that one client cannot keep the "
                       "others waiting. Wait for an answer before sending more.",
                       {"Retry-After": agent.retry_after(quota.held[client])})
    return _Reject(503, "busy", f"{quota.count()} requests are {stage} (the agent runs {lim.max_concurrent} "
                                f"measurements at once, queues {lim.max_queue} and receives {lim.max_uploads} "
                                "uploads at once); retry later.", {"Retry-After": agent.retry_after()})


async def _measure(agent: _Agent, request: Request) -> JSONResponse:
    lim = agent.limits
    client = request.client.host if request.client else "?"
    why = agent.uploads.refusal(client)
    if why:
        raise _refuse(agent, why, agent.uploads, "uploading", client)
    req_dir: Path | None = None
    queued = False
    agent.uploads.take(client)
    uploading = True
    try:
        req_dir = Path(tempfile.mkdtemp(prefix="req-", dir=agent.workdir))
        try:  # a client that trickles its upload must not hold an upload place for ever
            upload = await asyncio.wait_for(_read_upload(request, req_dir, lim.max_models), lim.upload_timeout_s)
        except TimeoutError:
            raise _Reject(408, "upload too slow", f"the upload did not finish within {lim.upload_timeout_s:g} s; "
                                                  "send smaller or fewer models per request.", CLOSE) from None
        agent.uploads.give(client)
        uploading = False
        spec = _parse_spec(upload.spec)
        # Only now, with the whole body in, does the request take a place in the measuring queue.
        why = agent.queued.refusal(client)
        if why:
            raise _refuse(agent, why, agent.queued, "waiting or being measured", client)
        agent.queued.take(client)
        queued = True
        write_json(req_dir / SPEC_FILE, {"spec": spec.model_dump(), "threads": lim.threads,
                                         "memory_limit_bytes": lim.memory_limit_bytes,
                                         "models": [{"file": f, "name": n} for f, n in upload.models]})
        names = ", ".join(n for _, n in upload.models)
        async with agent.slots.slot(client):
            # Validation (onnx.checker on a large model takes CPU) waits for the slot too, so that it never runs
            # beside a measurement and skews it.
            await asyncio.to_thread(_validate_models, req_dir, upload)
            t0 = time.perf_counter()
            rc, stderr = await asyncio.to_thread(agent.run_child, req_dir)
            seconds = time.perf_counter() - t0
        agent.mean_s = 0.7 * agent.mean_s + 0.3 * seconds
        if rc is None:
            raise _Reject(504, "timeout", f"measuring {names} ran past the agent's limit of {lim.timeout_s:g} s "
                                          "and was stopped. Use fewer rounds or runs, fewer models per request, "
                                          "or start the agent with a larger --timeout-s.")
        result_path = req_dir / RESULT_FILE
        if rc != 0 or not result_path.is_file():
            if out_of_memory(stderr):
                raise _Reject(507, "memory limit", f"measuring {names} needed more memory than the agent allows "
                                                   f"one measurement ({lim.max_memory_mb:,} MiB of address space, "
                                                   f"including the runtime itself); the measuring process exited "
                                                   f"with code {rc}: {stderr.strip()[-300:]}. Send a model that "
                                                   "needs less memory, or start the agent with a larger "
                                                   "--max-memory-mb.")
            raise _Reject(500, "measurement process failed", f"the measuring process exited with code {rc} "
                                                             f"without a result: {stderr.strip() or '(no output)'}")
        result = json.loads(result_path.read_text())
        peak = result.get("peak_rss_bytes")
        if "status" in result:
            detail = result["detail"]
            if result["status"] == 507 and peak:
                detail += f" (the measuring process peaked at {peak / MiB:,.0f} MiB resident)"
            log.info("measuring %s: %s (peak %s bytes resident)", names, result["error"], peak)
            raise _Reject(int(result["status"]), result["error"], detail)
        log.info("measured %s in %.2f s, peak %s bytes resident (%s)", names, seconds, peak, spec.model_dump())
        body = {"measurements": result["measurements"], "device": agent.lite}
        if "profiles" in result:
            body["profiles"] = result["profiles"]
        return JSONResponse(body)
    finally:
        if uploading:
            agent.uploads.give(client)
        if queued:
            agent.queued.give(client)
        if req_dir is not None:
            shutil.rmtree(req_dir, ignore_errors=True)


def create_app(token: str, *, workdir: Path | None = None, **limits_kw: Any) -> FastAPI:
    """The agent's ASGI app. ``token`` is the shared secret clients send as ``Authorization: Bearer``; uploads
    go into ``workdir`` (default: a fresh temporary directory, removed at shutdown); ``limits_kw`` are
    :class:`AgentLimits` fields (``max_upload_bytes``, ``max_models``, ``max_concurrent``, ``max_queue``,
    ``per_client``, ``max_uploads``, ``timeout_s``, ``threads``, ``max_memory_mb``, ``header_timeout_s``,
    ``body_timeout_s``, ``upload_timeout_s``). Serve it with :func:`uvicorn_config` (the connection deadlines
    live there). See the module docstring."""
    if not token or any(c.isspace() for c in token):
        raise UsageError("the agent needs a non-empty token without whitespace; read it with read_token(path).")
    known = {f.name: f.type for f in fields(AgentLimits)}
    unknown = [k for k in limits_kw if k not in known]
    if unknown:
        raise UsageError(f"unknown agent limit '{unknown[0]}'; expected one of {', '.join(known)}."
                         + did_you_mean(unknown[0], list(known)))
    limits = AgentLimits(**{k: float(v) if "float" in str(known[k]) else int(v) for k, v in limits_kw.items()})
    if workdir is None:
        wd, own = Path(tempfile.mkdtemp(prefix="chipfit-agent-")), True
    else:
        wd, own = Path(workdir).resolve(), False
        wd.mkdir(parents=True, exist_ok=True, mode=0o700)
    agent = _Agent(limits, wd, own)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("chipfit agent on %s: limits %s, working directory %s", agent.facts["device"], limits.to_dict(), wd)
        yield
        agent.shutdown()

    app = FastAPI(title="chipfit device agent", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.agent = agent

    @app.exception_handler(_Reject)
    async def _on_reject(_: Request, exc: _Reject) -> JSONResponse:
        log.info("refused (%d %s): %s", exc.status, exc.error, exc.detail)
        return _error(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        from http import HTTPStatus

        return _error(exc.status_code, HTTPStatus(exc.status_code).phrase.lower(), str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def _on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("agent error")
        return _error(500, "agent error", f"{type(exc).__name__}: {exc}")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/facts")
    async def facts() -> dict[str, Any]:
        return {**agent.facts, "state": agent.state()}

    @app.post("/measure")
    async def measure(request: Request) -> JSONResponse:
        return await _measure(agent, request)

    app.add_middleware(_Guard, token=token, max_body=limits.max_upload_bytes, body_timeout_s=limits.body_timeout_s)
    return app


def uvicorn_config(app: FastAPI, **kw: Any) -> Any:
    """A ``uvicorn.Config`` for the agent's ``app`` with its connection deadlines (the h11 protocol of
    :mod:`chipfit.agent.protocol`); ``kw`` go to ``uvicorn.Config`` (host, port, ...)."""
    import uvicorn

    from chipfit.agent.protocol import protocol_class

    lim: AgentLimits = app.state.agent.limits
    opts: dict[str, Any] = {"log_level": "warning", "access_log": False, "server_header": False,
                            "timeout_graceful_shutdown": 5, "lifespan": "on", **kw}
    return uvicorn.Config(app, http=protocol_class(lim.header_timeout_s, lim.body_timeout_s), **opts)


def serve(host: str, port: int, token_file: str | Path, **kw: Any) -> None:
    """Run the agent with uvicorn until interrupted; ``kw`` are :func:`create_app`'s limits."""
    import uvicorn

    from chipfit.agent.client import read_token

    app = create_app(read_token(token_file), **kw)
    # On Ctrl-C, wait at most 5 s for requests in flight; the lifespan's shutdown then kills running workers.
    uvicorn.Server(uvicorn_config(app, host=host, port=int(port))).run()
