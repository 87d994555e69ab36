"""The child process in which the device agent measures: ``python -m chipfit.agent.worker REQUEST_DIR``.

The agent writes the uploaded models (under names it chose, never the client's) and ``spec.json`` into a request
directory of its own, starts this module there, and reads ``result.json`` back. Running in a child lets the agent
kill a measurement that runs past its time limit, and keeps a runtime crash from taking the agent down.

``spec.json``: ``{"spec": {rounds, runs, warmup, estimator, memory, seed}, "threads": N,
"models": [{"file": "model-0", "name": "shown name"}, ...]}``.
``result.json``: ``{"measurements": [Measurement.to_dict(), ...]}`` or ``{"status": 422|500, "error": ...,
"detail": ...}``.

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


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the whole file or none)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def run_request(req_dir: Path) -> dict[str, Any]:
    """Measure the models of one request directory; return what goes into ``result.json``."""
    from chipfit.measure.base import runtime_for
    from chipfit.measure.modelfile import inspect_model_bytes

    req = json.loads((req_dir / SPEC_FILE).read_text())
    spec, threads = dict(req["spec"]), int(req["threads"])
    profile = bool(spec.pop("profile", False))
    try:
        models = [inspect_model_bytes((req_dir / m["file"]).read_bytes(), name=m["name"]) for m in req["models"]]
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
    except ChipfitError as e:
        return {"status": 422, "error": "measurement failed", "detail": str(e)}
    except Exception as e:  # a runtime's own exception types; report, never hide
        return {"status": 500, "error": "measurement crashed", "detail": f"{type(e).__name__}: {e}"[:2000]}
    return {"measurements": out, "profiles": profiles} if profile else {"measurements": out}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m chipfit.agent.worker REQUEST_DIR\n")
        return 2
    req_dir = Path(argv[0])
    write_json(req_dir / RESULT_FILE, run_request(req_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
