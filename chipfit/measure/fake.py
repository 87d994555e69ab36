"""A deterministic fake runtime for tests: its "latency" is a known linear function of the model's op
graph (MACs per op class, nodes), with an optional seeded multiplicative noise, so a calibration fitted to
it can be checked against the truth. It never times anything.

>>> rt = FakeRuntime()
>>> m = rt.measure(fake_model(macs=10_000))
>>> round(m.latency_ms, 6)  # 10,000 dense MACs x 1e-6 ms + 1 node x 0.002 ms + 0.01 ms fixed
0.022
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from chipfit.measure.base import Artifact, Runtime, _as_model
from chipfit.measure.modelfile import ModelFile, inspect_model_bytes
from chipfit.measure.record import Measurement

DEFAULT_MS_PER_MAC = {"conv": 2e-6, "depthwise": 4e-6, "dense": 1e-6}


def fake_model(macs: int = 1000, *, name: str | None = None) -> ModelFile:
    """A one-node ONNX model (``MatMul`` of a 1 x ``macs`` input by a ``macs`` x 1 weight)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((macs, 1), 0.01, np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "fake",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, macs])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [w])
    return inspect_model_bytes(helper.make_model(g).SerializeToString(), name=name or f"fake-{macs}.onnx")


class FakeRuntime(Runtime):
    """latency = sum over nodes of MACs x ``ms_per_mac[class]`` + nodes x ``ms_per_node`` + ``fixed_ms``,
    times ``1 + noise * N(0, 1)`` seeded by the model's bytes."""

    name: ClassVar[str] = "fake"

    def __init__(self, threads: int = 1, *, ms_per_mac: Mapping[str, float] | None = None,
                 ms_per_node: float = 0.002, fixed_ms: float = 0.01, noise: float = 0.0,
                 device: str = "fake device") -> None:
        super().__init__(threads)
        self._device = device
        self.ms_per_mac = dict(DEFAULT_MS_PER_MAC if ms_per_mac is None else ms_per_mac)
        self.ms_per_node, self.fixed_ms, self.noise = ms_per_node, fixed_ms, noise

    def describe(self) -> str:
        return "fake (deterministic, linear in MACs and nodes)"

    def device(self) -> str:
        return self._device

    def open(self, model: ModelFile, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        return lambda: None

    def true_latency_ms(self, model: ModelFile) -> float:
        import onnx

        from chipfit.graph.onnx_reader import from_onnx

        g = from_onnx(onnx.load_model_from_string(model.data))
        ms = self.fixed_ms
        for n in g.nodes:
            if n.op.is_alias:
                continue
            ms += n.macs * self.ms_per_mac.get(n.op.value, 0.0) + self.ms_per_node
        if self.noise:
            seed = int.from_bytes(hashlib.sha256(model.data).digest()[:8], "little")
            ms *= 1.0 + self.noise * float(np.random.default_rng(seed).standard_normal())
        return ms

    def measure_many(self, artifacts: Sequence[Artifact], inputs: Sequence[dict[str, np.ndarray]] | None = None,
                     *, rounds: int = 5, runs: int = 20, warmup: int = 5, estimator: str = "min",
                     memory: bool = False, seed: int = 0, energy: bool = False) -> list[Measurement]:
        out = []
        for a in artifacts:
            m = _as_model(a)
            ms = self.true_latency_ms(m)
            out.append(Measurement(model=m.name, runtime=self.describe(), device=self.device(), latency_ms=ms,
                                   estimator=f"{estimator} (fake: exact)", p50_ms=ms, p90_ms=ms, p99_ms=ms,
                                   runs=rounds * runs, peak_memory_bytes=len(m.data) if memory else None,
                                   memory_method="fake: model size" if memory else None,
                                   input_shapes=tuple(i.shape for i in m.inputs)))
        return out
