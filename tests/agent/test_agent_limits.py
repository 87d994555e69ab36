"""The device agent's defences against clients that hold a valid token or only hold connections (issue 12):
a memory cap on the measuring process, deadlines that close stalled connections, a per-client fair queue that
slow uploads do not enter, external data refused anywhere in an ONNX graph without touching the filesystem,
and safe hints for a token path that is not a regular file.

Every case is scaled down through the agent's limits (a 512 MiB cap, half-second deadlines), every loop is
bounded in count and time, and everything runs on loopback (clients differ by their 127.0.0.x address).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import test_agent as base
from onnx import TensorProto, helper
from typer.testing import CliRunner

from chipfit.agent.client import AgentRuntime, read_token
from chipfit.agent.queue import FairQueue
from chipfit.agent.validate import check_self_contained, external_references, validate_model_bytes
from chipfit.errors import MeasurementError, UsageError
from chipfit.measure.fake import fake_model

MiB = 1024 * 1024
QUICK, TOKEN, assert_clean, auth, conv_model, post_models = (base.QUICK, base.TOKEN, base.assert_clean, base.auth,
                                                             base.conv_model, base.post_models)
agent, start_agent = base.agent, base.start_agent  # the fixtures


def connect(url: str, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout, source_address=(source, 0))


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the agent sends until it closes the connection, and when it closed (seconds from now); fails
    if the connection is still open after ``limit_s``."""
    t0, out = time.monotonic(), b""
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit_s:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return out, time.monotonic() - t0
        if not chunk:
            return out, time.monotonic() - t0
        out += chunk
    pytest.fail(f"the agent kept the connection open for more than {limit_s} s; it sent {out[:200]!r}")


def upload_head(url: str, length: int = 10_000, token: str = TOKEN) -> bytes:
    host = url.removeprefix("http://")
    return (f"POST /measure HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {length}\r\n\r\n"
            "--xyz\r\nContent-Disposition: form-data; name=\"models\"; filename=\"m.onnx\"\r\n\r\n").encode()


# -- memory -------------------------------------------------------------------------------------------------------

def memory_bomb(n: int = 1 << 28) -> bytes:
    """A ~130-byte model whose ConstantOfShape builds an ``n``-float tensor (1 GiB by default)."""
    shape = helper.make_tensor("s", TensorProto.INT64, [1], [n])
    g = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["s"], ["b"], value=helper.make_tensor("v", TensorProto.FLOAT, [1],
                                                                                     [1.0])),
         helper.make_node("Add", ["x", "b"], ["y"])], "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [shape])
    return helper.make_model(g).SerializeToString()


def test_a_model_that_allocates_past_the_memory_limit_is_507_and_the_agent_stays_up(start_agent):
    a = start_agent(max_memory_mb=512)
    facts = httpx.get(f"{a.url}/facts", headers=auth()).json()
    assert facts["limits"]["max_memory_mb"] == 512 and facts["memory_limit"].startswith("RLIMIT_AS")
    bomb = memory_bomb()
    assert len(bomb) < 200
    r = post_models(a.url, [("bomb.onnx", bomb)], timeout=60)
    assert r.status_code == 507, r.text
    body = r.json()
    assert body["error"] == "memory limit" and "bomb.onnx" in body["detail"]
    assert "512 MiB" in body["detail"] and "--max-memory-mb" in body["detail"]
    peak = re.search(r"peaked at ([\d,]+) MiB resident", body["detail"])
    assert peak and int(peak.group(1).replace(",", "")) < 512, body["detail"]  # never near the 1 GiB it asked for
    with pytest.raises(MeasurementError, match=r"answered 507.*--max-memory-mb"):
        AgentRuntime(a.url, TOKEN).measure(validate_model_bytes(bomb, name="bomb.onnx"), **QUICK)
    # The agent is up, and the cap leaves room for an ordinary model (Python and ONNX Runtime included).
    assert httpx.get(f"{a.url}/health").json() == {"status": "ok"}
    r = post_models(a.url, [("conv.onnx", conv_model(hw=16).data)])
    assert r.status_code == 200, r.text
    assert_clean(a)


def test_worker_peak_memory_is_its_own_not_its_parents():
    import subprocess
    import sys

    ballast = bytearray(256 * MiB)  # this process holds 256 MiB when it starts the child
    ballast[::4096] = b"\1" * len(ballast[::4096])
    code = "from chipfit.agent.worker import peak_rss_bytes; print(peak_rss_bytes())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    del ballast
    assert 0 < int(out.stdout) < 128 * MiB  # ru_maxrss would say > 256 MiB here (it counts the fork's copy)


def test_memory_limit_must_leave_room_for_the_runtime():
    from chipfit.agent.server import AgentLimits, create_app

    with pytest.raises(UsageError, match="max_memory_mb must be >= 64"):
        AgentLimits(max_memory_mb=10)
    with pytest.raises(UsageError, match=r"unknown agent limit 'max_memory'.*max_memory_mb"):
        create_app(TOKEN, max_memory=512)


# -- connection deadlines -------------------------------------------------------------------------------------------

def test_a_connection_that_never_finishes_its_headers_is_closed(start_agent):
    a = start_agent(header_timeout_s=0.5)
    with connect(a.url) as s:  # half a request head, then nothing
        s.sendall(b"POST /measure HTTP/1.1\r\nHost: x\r\nAuthoriz")
        answer, seconds = read_until_closed(s, 5)
    assert answer.startswith(b"HTTP/1.1 408") and b"request head" in answer, answer
    assert 0.3 < seconds < 3
    with connect(a.url) as s:  # nothing at all: closed silently
        answer, seconds = read_until_closed(s, 5)
    assert answer == b"" and seconds < 3
    with connect(a.url) as s:  # a kept-alive connection: one whole request, then half of the next head
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        first = b""
        for _ in range(10):  # head and body may come in separate segments
            first += s.recv(4096)
            if first.endswith(b'{"status":"ok"}'):
                break
        assert first.startswith(b"HTTP/1.1 200") and first.endswith(b'{"status":"ok"}'), first
        s.sendall(b"GET /health HTTP/1.1\r\nHo")  # uvicorn alone cancels its keep-alive timer on this byte
        answer, seconds = read_until_closed(s, 5)
    assert answer.startswith(b"HTTP/1.1 408") and seconds < 3
    assert httpx.get(f"{a.url}/health").json() == {"status": "ok"}


def test_a_body_left_unread_after_an_early_answer_must_arrive_in_time(start_agent):
    a = start_agent(body_timeout_s=0.5)
    with connect(a.url) as s:  # a wrong token and a 50 MB body announced, then trickled a byte at a time
        s.sendall(upload_head(a.url, length=50_000_000, token="wrong-token-0123456789abcdef"))
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 401")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 5:
            try:
                s.sendall(b"x")
                time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed, "the agent kept reading a trickled body it never wanted"
        assert time.monotonic() - t0 < 3


def test_an_upload_that_stalls_is_408_and_the_connection_closed(start_agent):
    a = start_agent(body_timeout_s=0.5)
    with connect(a.url) as s:
        s.sendall(upload_head(a.url) + b"\x08\x07")  # a valid token, the start of a model, then nothing
        answer, seconds = read_until_closed(s, 5)
    assert b" 408 " in answer.split(b"\r\n")[0] and b"upload stalled" in answer, answer
    assert b"connection: close" in answer.lower() and seconds < 3
    assert_clean(a)


# -- fair admission --------------------------------------------------------------------------------------------------

def test_slow_uploads_hold_no_queue_place_and_are_limited_per_client(start_agent):
    a = start_agent(max_concurrent=1, max_queue=0, per_client=2, body_timeout_s=5)
    stalled = [connect(a.url, source="127.0.0.2") for _ in range(2)]
    try:
        for s in stalled:  # client A: two uploads that stall after their first bytes
            s.sendall(upload_head(a.url))
        deadline = time.monotonic() + 5
        while httpx.get(f"{a.url}/facts", headers=auth()).json()["state"]["uploading"] < 2:
            assert time.monotonic() < deadline, "the stalled uploads never reached the agent"
            time.sleep(0.05)
        # Client B is measured at once: the stalled uploads hold no place in the (zero-length) queue.
        t0 = time.monotonic()
        r = post_models(a.url, [("b.onnx", fake_model(10).data)], source="127.0.0.3")
        assert r.status_code == 200, r.text
        assert time.monotonic() - t0 < 4
        # A third upload from A is over A's quota.
        r = post_models(a.url, [("a3.onnx", fake_model(10).data)], source="127.0.0.2")
        assert r.status_code == 429 and r.json()["error"] == "too many requests from this client"
        assert "at most 2" in r.json()["detail"] and int(r.headers["Retry-After"]) >= 1
        # What the client makes of it (AgentRuntime cannot choose its source address; its mapping is tested).
        err = AgentRuntime(a.url, TOKEN)._error(r.status_code, r.json(), r.headers.get("Retry-After"))
        assert "answered 429" in str(err) and "wait for their answers" in str(err)
    finally:
        for s in stalled:
            s.close()
    assert_clean_soon(a)


def assert_clean_soon(a, limit_s: float = 10) -> None:
    """The request directories of closed uploads are removed (once the agent notices the disconnect)."""
    deadline = time.monotonic() + limit_s
    while list(a.workdir.iterdir()):
        assert time.monotonic() < deadline, "request directories were left behind"
        time.sleep(0.1)


def test_one_client_cannot_fill_the_queue_and_waiting_clients_take_turns(start_agent):
    a = start_agent(max_concurrent=1, max_queue=2, per_client=2)
    heavy = conv_model(name="a.onnx").data
    spec = '{"rounds": 1, "runs": 100, "warmup": 1}'
    barrier = threading.Barrier(4)
    first_refusal = threading.Event()
    done: dict[str, float] = {}

    def from_a(i: int) -> int:
        barrier.wait()
        r = post_models(a.url, [(f"a{i}.onnx", heavy)], spec=spec, source="127.0.0.2", timeout=60)
        done[f"a{i}"] = time.monotonic()
        if r.status_code != 200:
            first_refusal.set()
        return r.status_code

    with ThreadPoolExecutor(4) as pool:
        codes_a = pool.map(from_a, range(4))
        assert first_refusal.wait(30), "client A was never refused"
        r = post_models(a.url, [("b.onnx", fake_model(10).data)], source="127.0.0.3", timeout=60)
        done["b"] = time.monotonic()
        codes_a = list(codes_a)
    assert r.status_code == 200, r.text  # before: 503, A held the whole queue
    assert set(codes_a) <= {200, 429} and 1 <= codes_a.count(429) <= 2, codes_a
    # B, never served before, went ahead of A's waiting request.
    assert done["b"] < max(t for k, t in done.items() if k != "b" and codes_a[int(k[1])] == 200)
    assert_clean(a)


def test_fair_queue_passes_a_slot_on_when_a_waiter_gives_up():
    async def scenario() -> list[str]:
        q, order = FairQueue(slots=1), []
        release = asyncio.Event()

        async def hold() -> None:
            async with q.slot("a"):
                order.append("a")
                await release.wait()

        async def job(client: str) -> None:
            async with q.slot(client):
                order.append(client)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        quitter = asyncio.create_task(job("b"))
        later = asyncio.create_task(job("c"))
        await asyncio.sleep(0)
        quitter.cancel()
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, later), 5)
        assert q.free == 1 and q.waiting() == 0
        return order

    assert asyncio.run(scenario()) == ["a", "c"]


# -- external data ----------------------------------------------------------------------------------------------------

def _external(name: str = "w", location: str = "secret.bin") -> TensorProto:
    t = helper.make_tensor(name, TensorProto.FLOAT, [1], [0.0])
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    t.external_data.add(key="length", value="4")
    return t


def _graph(nodes, inits=(), sparse=(), name="g", out="y"):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1])], list(inits))
    g.sparse_initializer.extend(sparse)
    return g


def _constant_model(location: str) -> bytes:
    """Constant (its value in a file named ``location``) + Add: the model of issue 12."""
    return helper.make_model(_graph([helper.make_node("Constant", [], ["c"], value=_external(location=location)),
                                     helper.make_node("Add", ["x", "c"], ["y"])])).SerializeToString()


def _sparse(location: str = "secret.bin") -> object:
    idx = helper.make_tensor("i", TensorProto.INT64, [1], [0])
    return helper.make_sparse_tensor(_external("sv", location), idx, [1])


def _external_cases() -> dict[str, object]:
    add = helper.make_node("Add", ["x", "c"], ["y"])
    branch = _graph([helper.make_node("Identity", ["w"], ["b"])], [_external()], name="branch", out="b")
    body_const = _graph([helper.make_node("Constant", [], ["k"], value=_external()),
                         helper.make_node("Identity", ["k"], ["o"])], name="body", out="o")
    cases = {
        "initializer": _graph([helper.make_node("Add", ["x", "w"], ["y"])], [_external()]),
        "sparse initializer": _graph([helper.make_node("Add", ["x", "sv"], ["y"])], sparse=[_sparse()]),
        "Constant value": _graph([helper.make_node("Constant", [], ["c"], value=_external()), add]),
        "Constant sparse_value": _graph([helper.make_node("Constant", [], ["c"], sparse_value=_sparse()), add]),
        "ConstantOfShape value": _graph([helper.make_node("ConstantOfShape", ["x"], ["c"], value=_external()),
                                         add]),
        "tensors attribute": _graph([helper.make_node("Custom", ["x"], ["y"], domain="x", ts=[_external()])]),
        "If branch initializer": _graph([helper.make_node("If", ["x"], ["y"], then_branch=branch,
                                                          else_branch=branch)]),
        "Loop body Constant": _graph([helper.make_node("Loop", ["", ""], ["y"], body=body_const)]),
        "Scan body in If in Loop": _graph([helper.make_node("Loop", ["", ""], ["y"], body=_graph([
            helper.make_node("If", ["x"], ["o"], then_branch=_graph([
                helper.make_node("Scan", ["x"], ["b"], body=body_const, num_scan_inputs=1)], name="t", out="b"),
                else_branch=branch)], name="lb", out="o"))]),
        "graphs attribute": _graph([helper.make_node("Custom", ["x"], ["y"], domain="x", gs=[branch])]),
    }
    models = {k: helper.make_model(g) for k, g in cases.items()}
    fn = helper.make_function("local", "f", ["x"], ["y"], [
        helper.make_node("Constant", [], ["c"], value=_external()), helper.make_node("Add", ["x", "c"], ["y"])],
        [helper.make_opsetid("", 17)])
    models["function body"] = helper.make_model(_graph([helper.make_node("f", ["x"], ["y"], domain="local")]),
                                                functions=[fn])
    return models


@pytest.mark.parametrize("where", list(_external_cases()))
def test_external_data_is_refused_anywhere_in_the_graph(where, monkeypatch):
    import onnx

    model = _external_cases()[where]
    assert external_references(model), where

    def no_checker(*a, **k):  # the checker is what resolved the path on the agent's disk
        raise AssertionError("onnx.checker ran on a model that references external data")

    monkeypatch.setattr(onnx.checker, "check_model", no_checker)
    with pytest.raises(MeasurementError, match="references external data") as e:
        validate_model_bytes(model.SerializeToString(), name="m.onnx")
    assert "secret.bin" not in str(e.value)  # the path it names is never echoed


def test_self_contained_models_pass_and_name_where_the_reference_is():
    check_self_contained(fake_model(10).data, "ok.onnx")
    check_self_contained(conv_model().data, "conv.onnx")
    with pytest.raises(MeasurementError, match=r"node 0 \(Constant\) attribute 'value'"):
        check_self_contained(_constant_model("x.bin"), "m.onnx")


def test_a_constant_with_external_data_gets_the_same_answer_whether_or_not_the_file_exists(agent, tmp_path,
                                                                                           monkeypatch):
    # Files that exist where the agent runs (its working directory and the process's) and ones that do not.
    (agent.workdir / "exists.bin").write_bytes(b"\0" * 4)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.bin").write_bytes(b"\0" * 4)
    answers = set()
    try:
        for loc in ("here.bin", "missing.bin", "exists.bin", "../../../exists.bin", "/etc/hostname", "/nope"):
            r = post_models(agent.url, [("c.onnx", _constant_model(loc))])
            answers.add((r.status_code, r.json()["error"], r.json()["detail"]))
    finally:
        (agent.workdir / "exists.bin").unlink()
    assert len(answers) == 1, answers
    status, error, detail = answers.pop()
    assert status == 400 and error == "not a model" and "references external data" in detail
    assert_clean(agent)


# -- token hints -----------------------------------------------------------------------------------------------------

def test_a_token_path_that_is_not_a_regular_file_gets_a_regular_file_hint(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # reading it would block: the check must come first
    for path, kind in (("/dev/null", "a character device"), (tmp_path, "a directory"), (fifo, "a named pipe")):
        with pytest.raises(UsageError) as e:
            read_token(path)
        msg = str(e.value)
        assert "not a regular file" in msg and kind in msg and "regular file holding" in msg, msg
        assert f"chmod 600 {path}" not in msg and f"> {path}" not in msg, msg
    from chipfit.cli import app as cli

    r = CliRunner().invoke(cli, ["agent", "--token-file", "/dev/null"])
    assert r.exit_code == 2 and "not a regular file" in r.stderr and "chmod 600 /dev/null" not in r.stderr


def test_a_missing_token_file_still_gets_the_create_hint(tmp_path):
    with pytest.raises(UsageError, match=r"no token file.*chmod 600"):
        read_token(tmp_path / "missing")


def test_facts_show_the_new_limits_and_live_state(agent):
    facts = httpx.get(f"{agent.url}/facts", headers=auth()).json()
    lim = facts["limits"]
    assert {"per_client", "max_uploads", "max_memory_mb", "header_timeout_s", "body_timeout_s",
            "upload_timeout_s"} <= set(lim)
    assert facts["state"] == {"uploading": 0, "queued": 0, "waiting": 0}
    assert np.isfinite(lim["max_memory_mb"]) and lim["max_memory_mb"] >= 256
