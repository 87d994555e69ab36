"""What the device agent checks in an uploaded model before any checker or runtime sees it.

An ONNX tensor may keep its bytes in an *external* file named by a path inside the model. Such a path, in a file
sent from another machine, can only point at the agent's own disk: ``onnx.checker`` resolves it (and answers
differently when the file exists), and a runtime would read it. The agent therefore refuses every model that
holds an external reference anywhere, by looking at the protobuf alone (never at the filesystem), so the answer
is the same whether or not the named file exists:

- every initializer and sparse initializer of the graph,
- every tensor in every node attribute (``Constant``'s ``value`` and ``sparse_value``, ``ConstantOfShape``'s
  ``value``, any ``TENSOR``, ``TENSORS``, ``SPARSE_TENSOR`` and ``SPARSE_TENSORS`` attribute),
- every subgraph (``If``'s branches, ``Loop``'s and ``Scan``'s bodies, any ``GRAPH`` or ``GRAPHS`` attribute),
  recursively, and the nodes of model-local functions and of training-info graphs.

>>> from onnx import TensorProto, helper
>>> t = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
>>> t.data_location = TensorProto.EXTERNAL
>>> _ = t.external_data.add(key="location", value="secret.bin")
>>> g = helper.make_graph([helper.make_node("Constant", [], ["y"], value=t)], "g", [],
...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
>>> external_references(helper.make_model(g))
["node 0 (Constant) attribute 'value'"]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chipfit.errors import MeasurementError
from chipfit.measure.modelfile import ModelFile, inspect_model_bytes

#: At most this many places are named in the error (a model may reference external data thousands of times).
MAX_NAMED = 5


def _is_external(tensor: Any) -> bool:
    from onnx import TensorProto

    return tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data) > 0


def _sparse_external(sparse: Any) -> bool:
    return _is_external(sparse.values) or _is_external(sparse.indices)


def _attribute_refs(attr: Any, where: str) -> Iterator[str]:
    if attr.HasField("t") and _is_external(attr.t):
        yield where
    if any(_is_external(t) for t in attr.tensors):
        yield where
    if attr.HasField("sparse_tensor") and _sparse_external(attr.sparse_tensor):
        yield where
    if any(_sparse_external(s) for s in attr.sparse_tensors):
        yield where
    if attr.HasField("g"):
        yield from _graph_refs(attr.g, f"{where} subgraph")
    for k, g in enumerate(attr.graphs):
        yield from _graph_refs(g, f"{where} subgraph {k}")


def _node_refs(nodes: Any, prefix: str) -> Iterator[str]:
    for i, node in enumerate(nodes):
        for attr in node.attribute:
            yield from _attribute_refs(attr, f"{prefix}node {i} ({node.op_type}) attribute '{attr.name}'")


def _graph_refs(graph: Any, prefix: str = "") -> Iterator[str]:
    p = f"{prefix}: " if prefix else ""
    for t in graph.initializer:
        if _is_external(t):
            yield f"{p}initializer '{t.name}'"
    for s in graph.sparse_initializer:
        if _sparse_external(s):
            yield f"{p}sparse initializer '{s.values.name}'"
    yield from _node_refs(graph.node, p)


def external_references(model: Any) -> list[str]:
    """Where ``model`` (an ``onnx.ModelProto``) refers to external data: a description of each place, empty when
    the model is self-contained. Reads the protobuf only; never touches the filesystem."""
    refs = list(_graph_refs(model.graph))
    for f in model.functions:
        refs += _node_refs(f.node, f"function '{f.name}': ")
    for k, info in enumerate(model.training_info):
        refs += _graph_refs(info.initialization, f"training info {k} initialization")
        refs += _graph_refs(info.algorithm, f"training info {k} algorithm")
    return refs


def check_self_contained(data: bytes, name: str) -> None:
    """Raise MeasurementError if ``data`` is an ONNX model that refers to external data anywhere; bytes that do
    not parse as ONNX are left to :func:`~chipfit.measure.modelfile.inspect_model_bytes`, which names the reason.
    The message names where in the graph the reference is, never the path it names."""
    if len(data) >= 8 and data[4:8] == b"TFL3":
        return  # TFLite keeps its buffers inside the flatbuffer
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError):
        return
    refs = external_references(model)
    if refs:
        named = "; ".join(refs[:MAX_NAMED]) + (f"; and {len(refs) - MAX_NAMED} more" if len(refs) > MAX_NAMED
                                               else "")
        raise MeasurementError(f"'{name}' references external data ({named}): the agent measures self-contained "
                               "ONNX files only and never reads other files on the device. Save the model with "
                               "its tensors inside (onnx.save(model, path, save_as_external_data=False)).")


def validate_model_bytes(data: bytes, *, name: str) -> ModelFile:
    """The agent's check of one uploaded file: self-contained (see the module docstring), then
    :func:`~chipfit.measure.modelfile.inspect_model_bytes` (format, ``onnx.checker``, inputs)."""
    check_self_contained(data, name)
    return inspect_model_bytes(data, name=name)
