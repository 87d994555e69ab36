"""Local runtimes: ONNX Runtime (CPU execution provider) and LiteRT (``ai-edge-litert``), with peak memory
taken in a fresh process (see :mod:`chipfit.measure.memory`).

>>> import onnx
>>> from onnx import TensorProto, helper
>>> g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
...                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])])
>>> from chipfit.measure.modelfile import inspect_model_bytes
>>> mf = inspect_model_bytes(helper.make_model(g).SerializeToString(), name="relu.onnx")
>>> m = OrtRuntime().measure(mf, rounds=2, runs=5)
>>> m.source, m.runs, m.latency_ms <= m.p50_ms
('measured', 10, True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from chipfit.errors import MeasurementError
from chipfit.measure.base import Runtime
from chipfit.measure.modelfile import ModelFile

# Runs per profile: calibration scales each profile to its probe's interleaved measurement
# (chipfit.cost.calibration.rescale_profile), so a profile gives only the split over nodes, which 50 runs settle;
# 200 cost 4x the time, time better spent on more probes (chipfit.measure.calibrate.DEFAULT_PROBES).
PROFILE_RUNS = 50


class OrtRuntime(Runtime):
    """ONNX Runtime, CPU execution provider, ``threads`` intra-op threads, sequential execution."""

    name: ClassVar[str] = "onnxruntime"
    kinds: ClassVar[tuple[str, ...]] = ("onnx",)
    local: ClassVar[bool] = True

    def describe(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__} (CPU, {self.threads} intra-op thread{'s' * (self.threads != 1)})"

    def options(self, profile_prefix: str | None = None) -> Any:
        """Session options of every measurement: ``threads`` intra-op threads, sequential, quiet; with
        ``profile_prefix``, ONNX Runtime's per-node profiler on, writing under that prefix."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        if profile_prefix is not None:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        return so

    def session(self, model: ModelFile) -> Any:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(model.data, self.options(), providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail / InvalidGraph / NotImplemented types
            raise MeasurementError(f"onnxruntime cannot load '{model.name}': {str(e).splitlines()[0][:300]}") from None

    def open(self, model: ModelFile, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        self.check_kind(model)
        sess = self.session(model)
        feed = dict(inputs)
        try:
            sess.run(None, feed)
        except Exception as e:
            shapes = {k: v.shape for k, v in feed.items()}
            raise MeasurementError(f"onnxruntime cannot run '{model.name}' on inputs {shapes}: "
                                   f"{str(e).splitlines()[0][:300]}") from None
        return functools.partial(sess.run, None, feed)

    def peak_memory(self, model: ModelFile) -> tuple[int, str] | None:
        from chipfit.measure.memory import fresh_process_peak

        return fresh_process_peak(model, "onnxruntime", self.threads)

    def profile_nodes(self, model: ModelFile, *, runs: int = PROFILE_RUNS, seed: int = 0
                      ) -> list[tuple[str, float, str]]:
        """Per-node kernel times from ONNX Runtime's profiler: ``(op_name, us, node_name)`` in execution order,
        each the mean of the faster half of ``runs`` runs; ``node_name`` is the graph node's name as ONNX Runtime
        reports it (its ``_token_N`` suffix removed), which can follow another order than the file's where
        branches run side by side (a residual block's shortcut). Profiling adds a fixed cost per node and has 1 us
        resolution, so these inform the per-MAC and per-element costs, not the totals."""
        import json
        import os
        import re
        import tempfile

        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="chipfit-prof-") as d:
            try:
                sess = ort.InferenceSession(model.data, self.options(os.path.join(d, "p")),
                                            providers=["CPUExecutionProvider"])
                feed = model.random_inputs(seed)
                for _ in range(runs):
                    sess.run(None, feed)
                events = json.loads(open(sess.end_profiling()).read())  # noqa: SIM115 - read once, dir removed
            except Exception as e:
                raise MeasurementError(f"profiling '{model.name}' with onnxruntime failed: {e}") from None
        per: dict[str, tuple[str, list[float]]] = {}
        for e in events:
            if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
                per.setdefault(e["name"], (e["args"]["op_name"], []))[1].append(float(e["dur"]))
        return [(op, float(np.mean(sorted(v)[: max(1, len(v) // 2)])), re.sub(r"(_token_\d+)?_kernel_time$", "", name))
                for name, (op, v) in per.items()]


    def profile_many(self, artifacts: list[Any], *, seed: int = 0) -> list[list[tuple[str, float, str]] | None]:
        """:meth:`profile_nodes` for each model file."""
        from chipfit.measure.base import _as_model

        return [self.profile_nodes(_as_model(a), seed=seed) for a in artifacts]


class LiteRtRuntime(Runtime):
    """LiteRT (TFLite) interpreter from ``ai-edge-litert`` with its default XNNPACK delegate."""

    name: ClassVar[str] = "litert"
    kinds: ClassVar[tuple[str, ...]] = ("tflite",)
    local: ClassVar[bool] = True

    def describe(self) -> str:
        try:
            from importlib.metadata import version

            v = version("ai-edge-litert")
        except Exception:
            v = "?"
        return f"litert {v} (XNNPACK, {self.threads} thread{'s' * (self.threads != 1)})"

    def interpreter(self, model: ModelFile) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        try:
            it = Interpreter(model_content=model.data, num_threads=self.threads)
            it.allocate_tensors()
        except Exception as e:
            raise MeasurementError(f"LiteRT cannot load '{model.name}': {str(e).splitlines()[0][:300]}") from None
        return it

    def open(self, model: ModelFile, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        self.check_kind(model)
        it = self.interpreter(model)
        details = it.get_input_details()
        if len(details) != len(inputs):
            raise MeasurementError(f"'{model.name}' has {len(details)} inputs; given {len(inputs)} "
                                   f"({', '.join(inputs)}).")
        by_name = {d["name"]: d for d in details}
        pairs = ([(by_name[k], v) for k, v in inputs.items()] if set(inputs) == set(by_name)
                 else list(zip(details, inputs.values(), strict=True)))  # names differ: the model's order
        for d, x in pairs:
            it.set_tensor(d["index"], np.asarray(x, dtype=d["dtype"]).reshape(d["shape"]))
        it.invoke()
        return it.invoke

    def peak_memory(self, model: ModelFile) -> tuple[int, str] | None:
        from chipfit.measure.memory import fresh_process_peak

        return fresh_process_peak(model, "litert", self.threads)
