"""The child process in which the device agent measures: ``python -m chipfit.agent.worker REQUEST_DIR``.

The agent writes the uploaded models (under names it chose, never the client's) and ``spec.json`` into a request
directory of its own, starts this module there, and reads ``result.json`` back. Running in a child lets the agent
kill a measurement that runs past its time limit, cap the memory a model may take, and keeps a runtime crash from
taking the agent down.

Memory: before it imports any runtime, the worker caps its own address space (``RLIMIT_AS``, soft and hard, so
nothing it runs can raise it again; inherited by the fresh processes that probe peak memory) at
``memory_limit_bytes``. An allocation past the cap fails inside the runtime (ONNX Runtime: "Failed to allocate
memory", Python: ``MemoryError``), and the worker reports ``507 memory limit``. The cap counts virtual address
space, so it includes Python and the runtime themselves (about 0.3 GB with ONNX Runtime). Where ``setrlimit`` is
missing (not POSIX) the cap is not enforced and the agent says so in its facts; cgroups are not used (they need a
delegated cgroup, which a plain ``chipfit agent`` does not have).

``spec.json``: ``{"spec": {rounds, runs, warmup, estimator, memory, seed}, "threads": N, "memory_limit_bytes": B,
"models": [{"file": "model-0", "name": "shown name"}, ...]}``.
``result.json``: ``{"measurements": [Measurement.to_dict(), ...], "peak_rss_bytes": N}`` or ``{"status":
422|500|507, "error": ..., "detail": ..., "peak_rss_bytes": N}``.

>>> import tempfile
>>> from chipfit.measure.fake import fake_model
>>> with tempfile.TemporaryDirectory() as d:
...     _ = (Path(d) / "model-0").write_bytes(fake_model(100).data)
...     write_json(Path(d) / SPEC_FILE, {"spec": {"rounds": 1, "runs": 2, "warmup": 0, "estimator": "min",
...                "memory": False, "seed": 0}, "threads": 1, "models": [{"file": "model-0", "name": "m.onnx"}]})
...     out = run_request(Path(d))
>>> out["measurements"][0]["model"], out["measurements"][0]["runs"]
('m.onnx', 2)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from chipfit.errors import ChipfitError

SPEC_FILE, RESULT_FILE = "spec.json", "result.json"
MiB = 1024 * 1024
#: What runtimes and the C++ library say when an allocation fails (matched case-insensitively).
OUT_OF_MEMORY_MARKERS = ("failed to allocate memory", "bad_alloc", "memoryerror", "cannot allocate memory",
                         "out of memory")


def memory_limit_method() -> str | None:
    """How the worker caps its memory on this system, or None where it cannot."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    return "RLIMIT_AS (address space of the measuring process)" if hasattr(resource, "RLIMIT_AS") else None


def apply_memory_limit(limit_bytes: int | None) -> int | None:
    """Cap this process's address space at ``limit_bytes`` (never above a cap already in force); return the cap
    now in force, or None where none can be set."""
    if not limit_bytes or memory_limit_method() is None:
        return None
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = int(limit_bytes) if hard == resource.RLIM_INFINITY else min(int(limit_bytes), hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return cap


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far: ``VmHWM`` on Linux (``ru_maxrss`` there also counts the
    parent's memory at the fork that made this process), ``ru_maxrss`` elsewhere (macOS reports bytes)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def out_of_memory(text: str) -> bool:
    """Whether an error message (or a worker's stderr) says an allocation failed.

    >>> out_of_memory("onnxruntime cannot run 'm.onnx': ... Failed to allocate memory for requested buffer")
    True
    """
    low = text.lower()
    return any(m in low for m in OUT_OF_MEMORY_MARKERS)


def _chain(e: BaseException) -> str:
    """The messages of an exception and its causes, for :func:`out_of_memory`."""
    parts, seen = [], set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(f"{type(cur).__name__}: {cur}")
        cur = cur.__cause__ or cur.__context__
    return " | ".join(parts)


def memory_error(names: str, limit_bytes: int | None, why: str) -> dict[str, Any]:
    """The ``507 memory limit`` result."""
    cap = f"{limit_bytes / MiB:,.0f} MiB" if limit_bytes else "the device's memory"
    return {"status": 507, "error": "memory limit",
            "detail": f"measuring {names} needed more memory than the agent allows one measurement ({cap} of "
                      f"address space, including the runtime itself): {why[:500]}. Send a model that needs less "
                      "memory (smaller tensors), or start the agent with a larger --max-memory-mb."}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the whole file or none)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def run_request(req_dir: Path) -> dict[str, Any]:
    """Measure the models of one request directory; return what goes into ``result.json``."""
    from chipfit.agent.validate import validate_model_bytes
    from chipfit.measure.registry import runtime_for

    req = json.loads((req_dir / SPEC_FILE).read_text())
    spec, threads = dict(req["spec"]), int(req["threads"])
    limit = req.get("memory_limit_bytes")
    names = ", ".join(str(m["name"]) for m in req["models"])
    profile = bool(spec.pop("profile", False))
    try:
        models = [validate_model_bytes((req_dir / m["file"]).read_bytes(), name=m["name"]) for m in req["models"]]
        out: list[Any] = [None] * len(models)
        profiles: list[Any] = [None] * len(models)
        # One runtime per format; the models of each format are timed interleaved in one call.
        for kind in dict.fromkeys(m.kind for m in models):
            idx = [i for i, m in enumerate(models) if m.kind == kind]
            rt = runtime_for(models[idx[0]], threads=threads)
            for i, m in zip(idx, rt.measure_many([models[i] for i in idx], **spec), strict=True):
                out[i] = m.to_dict()
            if profile and hasattr(rt, "profile_nodes"):  # per-node times, for calibration
                for i in idx:
                    profiles[i] = rt.profile_nodes(models[i], seed=int(spec.get("seed", 0)))
    except MemoryError as e:
        return memory_error(names, limit, f"MemoryError {e}".strip())
    except ChipfitError as e:
        if out_of_memory(_chain(e)):
            return memory_error(names, limit, str(e))
        return {"status": 422, "error": "measurement failed", "detail": str(e)}
    except Exception as e:  # a runtime's own exception types; report, never hide
        if out_of_memory(_chain(e)):
            return memory_error(names, limit, f"{type(e).__name__}: {e}")
        return {"status": 500, "error": "measurement crashed", "detail": f"{type(e).__name__}: {e}"[:2000]}
    return {"measurements": out, "profiles": profiles} if profile else {"measurements": out}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m chipfit.agent.worker REQUEST_DIR\n")
        return 2
    req_dir = Path(argv[0])
    # First, before any runtime is imported: the memory cap.
    apply_memory_limit(json.loads((req_dir / SPEC_FILE).read_text()).get("memory_limit_bytes"))
    result = run_request(req_dir)
    result["peak_rss_bytes"] = peak_rss_bytes()
    write_json(req_dir / RESULT_FILE, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
