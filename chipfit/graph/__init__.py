"""OpGraph, chipfit's IR, and its builders (ONNX, TFLite, torch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chipfit.errors import GraphError
from chipfit.graph.onnx_reader import from_onnx
from chipfit.graph.opgraph import Node, OpClass, OpGraph, TensorInfo
from chipfit.graph.tflite_reader import from_tflite

_LOADERS: dict[str, Callable[[Path], OpGraph]] = {".onnx": from_onnx, ".tflite": from_tflite}


def from_torch(*args, **kwargs) -> OpGraph:
    """Lazy wrapper of :func:`chipfit.graph.torch_trace.from_torch` (keeps torch out of light imports)."""
    from chipfit.graph.torch_trace import from_torch as _impl

    return _impl(*args, **kwargs)


def load_graph(path: str | Path) -> OpGraph:
    """Read a model file by its suffix (``.onnx``, ``.tflite``)."""
    p = Path(path)
    loader = _LOADERS.get(p.suffix.lower())
    if loader is None:
        raise GraphError(f"unsupported model file '{p.name}': expected one of {', '.join(sorted(_LOADERS))}.")
    return loader(p)


__all__ = ["Node", "OpClass", "OpGraph", "TensorInfo", "from_onnx", "from_tflite", "from_torch", "load_graph"]
