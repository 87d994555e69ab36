"""Check a model file before any runtime loads it, and describe its inputs.

A device agent accepts files from the network, so every model is validated here first: the format is
recognised from its bytes (not its name), ONNX files must pass ``onnx.checker`` and may not reference
external data (which could point anywhere on the device's disk), TFLite files must be a readable flatbuffer
with at least one subgraph.

>>> import onnx
>>> from onnx import TensorProto, helper
>>> g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
...                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
>>> mf = inspect_model_bytes(helper.make_model(g).SerializeToString(), name="relu.onnx")
>>> mf.kind, mf.inputs[0].shape
('onnx', (1, 4))
>>> inspect_model_bytes(b"hello", name="x.onnx")  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
chipfit.errors.ModelFileError: 'x.onnx' is not a model ...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chipfit.errors import MeasurementError, ModelFileError

MAX_INPUT_ELEMENTS = 2**26  # 64 M elements (256 MB of float32): a model asking for more is refused, not run
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}
_TFLITE_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8", 7: "int16"}


@dataclass(frozen=True)
class InputInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class ModelFile:
    """A validated model: its format (``onnx`` or ``tflite``), name, bytes and inputs."""

    name: str
    kind: str
    data: bytes
    inputs: tuple[InputInfo, ...]

    def random_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """One random input per model input, of the declared shape and dtype (dynamic dims become 1)."""
        rng = np.random.default_rng(seed)
        out = {}
        for i in self.inputs:
            if i.dtype.startswith("float"):
                out[i.name] = rng.standard_normal(i.shape).astype(i.dtype)
            else:
                info = np.iinfo(i.dtype)
                out[i.name] = rng.integers(max(info.min, -128), min(info.max, 127) + 1, i.shape).astype(i.dtype)
        return out


def _not_a_model(name: str, why: str) -> ModelFileError:
    return ModelFileError(f"'{name}' is not a model chipfit can run: {why}. Expected an ONNX (.onnx) or TFLite "
                            "(.tflite) file, e.g. best/model.int8.onnx from a run.")


def _inspect_onnx(data: bytes, name: str) -> ModelFile:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise _not_a_model(name, f"ONNX protobuf does not parse ({type(e).__name__})") from None
    g = model.graph
    if not g.node or not g.input or not g.output:
        raise _not_a_model(name, "no ONNX graph (no nodes, inputs or outputs)")
    for t in g.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise MeasurementError(f"'{name}' references external data ('{t.name}'): send a self-contained ONNX "
                                   "file (onnx.save(model, path, save_as_external_data=False)).")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as e:  # ValueError: e.g. names that are not UTF-8
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise _not_a_model(name, f"onnx.checker rejects it: {first}") from None
    inits = {t.name for t in g.initializer}
    inputs = []
    for vi in g.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or not tt.shape.dim:
            raise _not_a_model(name, f"ONNX input '{vi.name}' has no shape (0 dimensions declared); export with a "
                                     "fixed input shape")
        dims = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tt.shape.dim)
        dtype = _ONNX_DTYPES.get(tt.elem_type)
        if dtype is None:
            raise MeasurementError(f"'{name}': input '{vi.name}' has ONNX element type {tt.elem_type}; chipfit "
                                   f"generates inputs of types {', '.join(sorted(set(_ONNX_DTYPES.values())))}.")
        inputs.append(InputInfo(vi.name, dims, dtype))
    return ModelFile(name, "onnx", data, tuple(inputs))


def _inspect_tflite(data: bytes, name: str) -> ModelFile:
    import tflite

    try:
        m = tflite.Model.GetRootAsModel(data, 0)
        if m.SubgraphsLength() < 1:
            raise _not_a_model(name, "TFLite flatbuffer without a subgraph")
        sg = m.Subgraphs(0)
        if sg.InputsLength() * 4 > len(data):  # each entry takes 4 bytes: a larger count is a corrupt file
            raise _not_a_model(name, f"TFLite flatbuffer declares {sg.InputsLength():,} inputs in {len(data):,} bytes")
        inputs = []
        for k in range(sg.InputsLength()):
            t = sg.Tensors(sg.Inputs(k))
            if not t.ShapeLength():
                raise _not_a_model(name, f"TFLite input {k} has no shape (0 dimensions); convert with a fixed "
                                         "input shape")
            shape = tuple(max(1, int(x)) for x in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            dtype = _TFLITE_DTYPES.get(t.Type())
            if dtype is None:
                raise MeasurementError(f"'{name}': input {k} has TFLite tensor type {t.Type()}, which chipfit "
                                       "cannot generate.")
            inputs.append(InputInfo(t.Name().decode(errors="replace"), shape, dtype))
    except MeasurementError:
        raise
    except Exception as e:  # a corrupt flatbuffer raises anything from IndexError to struct.error
        raise _not_a_model(name, f"TFLite flatbuffer does not parse ({type(e).__name__})") from None
    return ModelFile(name, "tflite", data, tuple(inputs))


def inspect_model_bytes(data: bytes, *, name: str = "model") -> ModelFile:
    """Validate ``data`` as an ONNX or TFLite model, recognised by content; raise MeasurementError if not.
    Inputs larger than :data:`MAX_INPUT_ELEMENTS` in total are refused (a 75-byte file may declare a 16 GB input).
    """
    if len(data) >= 8 and data[4:8] == b"TFL3":
        mf = _inspect_tflite(data, name)
    elif not data:
        raise _not_a_model(name, "the file is empty (0 bytes)")
    else:
        mf = _inspect_onnx(data, name)
    total = sum(int(np.prod(i.shape, dtype=np.float64)) for i in mf.inputs)
    if total > MAX_INPUT_ELEMENTS:
        raise MeasurementError(f"'{name}' declares inputs of {total:,} elements in all; chipfit measures models with "
                               f"at most {MAX_INPUT_ELEMENTS:,} input elements (edge models take far fewer).")
    return mf


def inspect_model(path: str | Path, *, max_bytes: int | None = None) -> ModelFile:
    """Read and validate a model file."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"no model file at '{p}': give the path to an .onnx or .tflite file.")
    size = p.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise MeasurementError(f"'{p.name}' is {size:,} bytes; the limit is {max_bytes:,}.")
    return inspect_model_bytes(p.read_bytes(), name=p.name)
