"""Local runtimes by name: ``create_runtime("onnxruntime", threads=1)``, ``list_runtimes()``.

>>> from chipfit.measure.registry import list_runtimes
>>> "onnxruntime" in list_runtimes()
True
"""

from __future__ import annotations

from typing import Any

from chipfit.errors import UsageError
from chipfit.measure.base import Runtime
from chipfit.measure.fake import FakeRuntime
from chipfit.measure.local import LiteRtRuntime, OrtRuntime
from chipfit.measure.modelfile import ModelFile
from chipfit.naming import did_you_mean


def _registry() -> dict[str, type[Runtime]]:
    from chipfit.measure.qemu import QemuRuntime
    from chipfit.measure.tflm import TflmCmsisNnRuntime, TflmRuntime

    return {"onnxruntime": OrtRuntime, "litert": LiteRtRuntime, "fake": FakeRuntime, "tflm": TflmRuntime,
            "tflm-cmsis-nn": TflmCmsisNnRuntime, "qemu": QemuRuntime}


def list_runtimes() -> list[str]:
    """Names :func:`create_runtime` accepts (the device-agent client is :class:`chipfit.agent.client
    .AgentRuntime`, created from a URL)."""
    return sorted(_registry())


def create_runtime(name: str, **kw: Any) -> Runtime:
    """A local runtime by name, e.g. ``create_runtime("onnxruntime", threads=1)``; a board by name,
    ``create_runtime("qemu:cortex-m4")`` (TFLM + CMSIS-NN firmware on an emulated core)."""
    reg = _registry()
    if name.startswith("qemu:"):
        return reg["qemu"](core=name.removeprefix("qemu:"), **kw)
    if name not in reg:
        raise UsageError(f"unknown runtime '{name}': expected one of {', '.join(sorted(reg))}."
                         + did_you_mean(name, reg))
    return reg[name](**kw)


def runtime_for(model: ModelFile, threads: int = 1) -> Runtime:
    """The local runtime that runs ``model``'s format."""
    return create_runtime("onnxruntime" if model.kind == "onnx" else "litert", threads=threads)
