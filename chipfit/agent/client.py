"""The client side of the device agent: :class:`AgentRuntime` measures model files on a remote ``chipfit agent``
(a Raspberry Pi, a Jetson, any Linux box) through the same :class:`~chipfit.measure.base.Runtime` interface as the
local runtimes, and :func:`read_token` reads the shared secret both sides use.

Every error from the agent (refused token, upload too large, not a model, busy, timed out, unreachable) becomes a
:class:`~chipfit.errors.MeasurementError` that says what the agent said and what to do.

>>> rt = AgentRuntime("http://127.0.0.1:9", "not-a-real-token")
>>> rt.name, rt.url
('agent', 'http://127.0.0.1:9')
>>> rt.facts()  # nothing listens on port 9  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
chipfit.errors.MeasurementError: cannot reach the chipfit agent at http://127.0.0.1:9 ...
"""

from __future__ import annotations

import dataclasses
import json
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import numpy as np

from chipfit.errors import MeasurementError, UsageError
from chipfit.logging import get_logger
from chipfit.measure.base import ESTIMATORS, Artifact, Runtime, _as_model
from chipfit.measure.modelfile import ModelFile
from chipfit.measure.record import Measurement

if TYPE_CHECKING:
    from chipfit.cost.calibration import ProfileEvent

log = get_logger(__name__)

#: Bounds of the measurement settings the agent accepts (inclusive); the agent validates the same bounds.
SPEC_BOUNDS: dict[str, tuple[int, int]] = {"rounds": (1, 100), "runs": (1, 1000), "warmup": (0, 1000),
                                           "seed": (0, 2**32 - 1)}
TOKEN_HINT = ("check --token-file: it must hold the same token as the file the agent was started with "
              "(chipfit agent --token-file)")


def read_token(path: str | Path) -> str:
    """Read a token file: one line, surrounding whitespace stripped. Raises UsageError when the file is missing,
    is not a regular file (a device such as ``/dev/null``, a directory, a pipe), is empty or holds more than one
    word; logs a warning when other users may read it.

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "token"
    ...     _ = p.write_text("  s3cret-token-for-tests\\n")
    ...     os.chmod(p, 0o600)
    ...     read_token(p)
    's3cret-token-for-tests'
    """
    p = Path(path)
    make = ("create one with: python -c 'import secrets; print(secrets.token_urlsafe(32))' > "
            f"{p} && chmod 600 {p}")
    if not p.is_file():
        if p.exists():  # a device, a directory, a pipe: no hint may write to it or chmod it
            raise UsageError(f"the token file '{p}' is not a regular file (it is {_file_kind(p)}); expected a "
                             "regular file holding the agent's token. Write the token into a file of its own, "
                             "e.g.: python -c 'import secrets; print(secrets.token_urlsafe(32))' > agent.token "
                             "&& chmod 600 agent.token, and pass --token-file agent.token.")
        raise UsageError(f"no token file at '{p}': expected a file holding the agent's token; {make}.")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the token file '{p}' ({type(e).__name__}: {e}); expected a UTF-8 text "
                         f"file holding one token; {make}.") from None
    token = text.strip()
    if not token:
        raise UsageError(f"the token file '{p}' is empty; expected one token; {make}.")
    if any(c.isspace() for c in token) or not token.isprintable():
        raise UsageError(f"the token file '{p}' holds more than one word (or control characters); expected one "
                         "token on one line. Is this the token file?")
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file '%s' is readable by other users (mode %s); run: chmod 600 %s", p,
                    stat.filemode(mode), p)
    if len(token) < 16:
        log.warning("the token in '%s' is %d characters long; use at least 16 random characters "
                    "(python -c 'import secrets; print(secrets.token_urlsafe(32))')", p, len(token))
    return token


def _file_kind(p: Path) -> str:
    """What kind of file system object ``p`` is, in words (for a token path that is not a regular file)."""
    try:
        mode = p.stat().st_mode
    except OSError:
        return "unreadable"
    for test, words in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def check_spec(*, rounds: int, runs: int, warmup: int, estimator: str, seed: int) -> None:
    """Raise UsageError unless the settings lie within what the agent accepts (:data:`SPEC_BOUNDS`).

    >>> check_spec(rounds=5, runs=2000, warmup=5, estimator="min", seed=0)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    chipfit.errors.UsageError: runs must be an integer in 1..1000 for a measurement on the agent; given 2000.
    """
    given = {"rounds": rounds, "runs": runs, "warmup": warmup, "seed": seed}
    for k, (lo, hi) in SPEC_BOUNDS.items():
        v = given[k]
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
            raise UsageError(f"{k} must be an integer in {lo}..{hi} for a measurement on the agent; given {v!r}.")
    if estimator not in ESTIMATORS:
        raise UsageError(f"unknown estimator '{estimator}': expected one of {', '.join(ESTIMATORS)}.")



def _profile_event(e: Sequence[Any]) -> ProfileEvent:
    """One per-node profile event as the agent sent it: (op, us, node name), or (op, us) from an older agent
    (matched to the graph in execution order then)."""
    return (str(e[0]), float(e[1]), str(e[2])) if len(e) > 2 else (str(e[0]), float(e[1]))

class AgentRuntime(Runtime):
    """Measure on a remote ``chipfit agent`` at ``url`` (e.g. ``http://raspberrypi.local:8765``), authenticated
    by ``token``. Several models sent in one :meth:`measure_many` call are timed interleaved on the device, so
    their ratios are stable against the device's drift. Inputs are random, drawn on the device from ``seed``."""

    name: ClassVar[str] = "agent"

    def __init__(self, url: str, token: str, *, timeout_s: float = 300.0) -> None:
        super().__init__(threads=1)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"agent URL must look like http://HOST:PORT; given '{url}'.")
        if not token or any(c.isspace() for c in token):
            raise UsageError("the agent token is empty or contains whitespace; read it with read_token(path).")
        self.url = url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self._token = token
        self._facts: dict[str, Any] | None = None

    def __repr__(self) -> str:  # never show the token
        return f"AgentRuntime({self.url!r})"

    def describe(self) -> str:
        return f"chipfit agent at {self.url}"

    def device(self) -> str:
        return f"agent {self.url}: {self.facts().get('device', '?')}"

    def open(self, model: ModelFile, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        raise MeasurementError(f"the agent runtime runs models on the remote device at {self.url}, not in this "
                               "process; use measure() or measure_many().")

    def _request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        import httpx

        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            r = httpx.request(method, f"{self.url}{path}", headers=headers, timeout=self.timeout_s, **kw)
        except httpx.TimeoutException:
            raise MeasurementError(f"the chipfit agent at {self.url} did not answer within {self.timeout_s:g} s; "
                                   "measure fewer models or rounds per call, or raise timeout_s.") from None
        except httpx.HTTPError as e:
            raise MeasurementError(f"cannot reach the chipfit agent at {self.url} ({type(e).__name__}: {e}); is "
                                   "'chipfit agent' running there, on that port, and reachable from here?") from None
        try:
            body = r.json()
        except ValueError:
            body = {"error": "not JSON", "detail": r.text[:300]}
        if r.status_code == 200 and isinstance(body, dict):
            return body
        raise self._error(r.status_code, body if isinstance(body, dict) else {}, r.headers.get("Retry-After"))

    def _error(self, status: int, body: dict[str, Any], retry_after: str | None) -> MeasurementError:
        detail = body.get("detail") or body.get("error") or "no detail"
        what = {
            401: f"the agent refused the token; {TOKEN_HINT}",
            413: "the upload is larger than the agent accepts; send fewer or smaller models per call, or start "
                 "the agent with a larger --max-upload-mb",
            400: ("the agent rejected a file; send ONNX or TFLite files (e.g. best/model.int8.onnx)"
                  if "not a model" in str(detail) or "external data" in str(detail) else
                  "the agent rejected the request"),
            408: "the upload stalled or took longer than the agent allows; send fewer or smaller models per call",
            415: "the agent expects a multipart/form-data upload",
            422: "the measurement failed on the device",
            429: f"this client already has as many requests at the agent as it may hold at once; wait for their "
                 f"answers (retry after {retry_after or 'a few'} s)",
            507: "the model needs more memory than the agent allows one measurement; send a model that needs less, "
                 "or start the agent with a larger --max-memory-mb",
            503: f"the agent is busy (its queue is full); retry after {retry_after or 'a few'} s, or measure "
                 "fewer models at once",
            504: "the measurement ran past the agent's time limit and was stopped; use fewer rounds or runs, "
                 "or start the agent with a larger --timeout-s",
        }.get(status, "unexpected answer from the agent")
        return MeasurementError(f"chipfit agent at {self.url} answered {status}: {str(detail).rstrip('. ')}. {what}.")

    def max_batch(self) -> int | None:
        """The agent's models-per-request limit (from its facts)."""
        limit = self.facts().get("limits", {}).get("max_models")
        return int(limit) if limit else None

    def profile_many(self, artifacts: Sequence[Artifact], *, seed: int = 0) -> list[list[ProfileEvent] | None]:
        """Per-node profile times of each model on the device (``None`` where its runtime cannot profile), in one
        request with a minimal timing pass."""
        models = [_as_model(a) for a in artifacts]
        body = self._post_models(models, {"rounds": 1, "runs": 1, "warmup": 0, "estimator": "min", "memory": False,
                                          "energy": False, "seed": int(seed), "profile": True})
        profiles = body.get("profiles")
        if not isinstance(profiles, list) or len(profiles) != len(models):
            raise MeasurementError(f"the chipfit agent at {self.url} returned no per-node profiles; is it an older "
                                   "chipfit version?")
        return [None if p is None else [_profile_event(e) for e in p] for p in profiles]

    def _post_models(self, models: Sequence[ModelFile], spec: dict[str, Any]) -> dict[str, Any]:
        """One ``POST /measure`` with every model file and the spec."""
        files = [("models", (m.name, m.data, "application/octet-stream")) for m in models]
        return self._request("POST", "/measure", files=files, data={"spec": json.dumps(spec)})

    def facts(self) -> dict[str, Any]:
        """The agent's device facts: device, OS, CPUs, RAM, runtimes and versions, limits, chipfit version."""
        if self._facts is None:
            self._facts = self._request("GET", "/facts")
        return self._facts

    def measure_many(self, artifacts: Sequence[Artifact], inputs: Sequence[dict[str, np.ndarray]] | None = None,
                     *, rounds: int = 5, runs: int = 20, warmup: int = 5, estimator: str = "min",
                     memory: bool = False, seed: int = 0, energy: bool = False) -> list[Measurement]:
        """Send every model in one request; the agent times them interleaved with its local runtime."""
        if inputs is not None:
            raise UsageError("the agent draws random inputs on the device from `seed`; given explicit inputs. "
                             "Pass inputs=None (and a seed) to measure through the agent.")
        check_spec(rounds=rounds, runs=runs, warmup=warmup, estimator=estimator, seed=seed)
        models = [_as_model(a) for a in artifacts]
        if not models:
            raise UsageError("no model to measure: give one or more .onnx or .tflite files.")
        body = self._post_models(models, {"rounds": rounds, "runs": runs, "warmup": warmup, "estimator": estimator,
                                          "memory": bool(memory), "energy": bool(energy), "seed": int(seed)})
        try:
            device = f"agent {self.url}: {body['device']['device']}"
            result = [dataclasses.replace(Measurement.from_dict(d), device=device) for d in body["measurements"]]
        except (KeyError, TypeError, ValueError) as e:
            raise MeasurementError(f"the chipfit agent at {self.url} sent an answer this client cannot read "
                                   f"({type(e).__name__}: {e}); are client and agent the same chipfit version?"
                                   ) from None
        if len(result) != len(models):
            raise MeasurementError(f"the chipfit agent at {self.url} returned {len(result)} measurements for "
                                   f"{len(models)} models.")
        log.info("measured %d model(s) on %s", len(result), device)
        return result
