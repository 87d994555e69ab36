"""Model files at the edge (issue 12): empty files, empty graphs and inputs without a shape are usage errors
(exit 2) everywhere a model is read (OpGraph readers, profile, the model inspector); ``profile --strict`` never
passes a model it could not read; fuzzed ONNX and TFLite files give a graph or a ModelFileError, nothing else."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from chipfit.cli import app
from chipfit.errors import ChipfitError, GraphError, MeasurementError, ModelFileError, UsageError
from chipfit.graph import from_onnx, from_tflite, load_graph
from chipfit.measure.modelfile import inspect_model, inspect_model_bytes
from chipfit.profiling import profile

BASELINE_TFLITE = Path(__file__).resolve().parents[2] / "chipfit" / "measure" / "data" / "baseline.tflite"
FUZZ = settings(max_examples=int(os.environ.get("CHIPFIT_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def gemm_model(shape: list[int] | None = (1, 10)) -> onnx.ModelProto:  # type: ignore[assignment]
    w = numpy_helper.from_array(np.ones((4, 10), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape) if shape is not None else None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g", [x], [y], [w])
    return helper.make_model(g)


def no_nodes_model() -> onnx.ModelProto:
    v = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    return helper.make_model(helper.make_graph([], "g", [v], [v]))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {"empty.onnx": b"", "empty.tflite": b"", "noshape.onnx": gemm_model(None).SerializeToString(),
           "nonodes.onnx": no_nodes_model().SerializeToString(), "garbage.onnx": b"\x08\x01garbage"}
    paths = {}
    for name, data in out.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    return paths


def test_model_file_error_is_a_usage_error() -> None:
    e = ModelFileError("x")
    assert isinstance(e, UsageError) and isinstance(e, GraphError) and isinstance(e, MeasurementError)


@pytest.mark.parametrize(("name", "message"), [
    ("empty.onnx", r"is empty \(0 bytes\)"), ("empty.tflite", r"is empty \(0 bytes\)"),
    ("noshape.onnx", r"input 'x' of 'noshape' has no shape"), ("nonodes.onnx", r"empty ONNX graph \(no nodes"),
    ("garbage.onnx", "not a readable ONNX model"),
])
def test_unreadable_models_are_clear_errors(files: dict[str, Path], name: str, message: str) -> None:
    with pytest.raises(ModelFileError, match=message):
        load_graph(files[name])
    with pytest.raises(ModelFileError, match=message):
        profile(files[name], target="stm32h743")


@pytest.mark.parametrize(("name", "message"), [
    ("empty.onnx", r"the file is empty \(0 bytes\)"), ("empty.tflite", r"the file is empty \(0 bytes\)"),
    ("noshape.onnx", "shape"), ("nonodes.onnx", "no ONNX graph"),
])
def test_inspector_refuses_them(files: dict[str, Path], name: str, message: str) -> None:
    with pytest.raises(ModelFileError, match=message):
        inspect_model(files[name])


@pytest.mark.parametrize("name", ["empty.onnx", "noshape.onnx", "nonodes.onnx", "empty.tflite"])
def test_profile_strict_never_passes_an_unread_model(files: dict[str, Path], name: str) -> None:
    result = CliRunner().invoke(app, ["profile", str(files[name]), "--target", "stm32h743", "--contract",
                                      "examples/digits.yaml", "--strict"])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, text
    assert "PASS" not in text and "Traceback" not in text and name.split(".")[0] in text


def test_measure_cli_on_an_empty_file(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["measure", str(files["empty.onnx"])])
    assert result.exit_code == 2


def test_good_models_still_read(tmp_path: Path) -> None:
    assert from_onnx(gemm_model()).macs == 40
    assert from_onnx(gemm_model(["N", 10])).macs == 40  # a symbolic batch dimension is fixed to 1
    assert from_tflite(BASELINE_TFLITE).nodes
    assert inspect_model(BASELINE_TFLITE).inputs


# --- fuzzed model files ------------------------------------------------------------------------------------------


def read_all_ways(path: Path) -> None:
    """Every reader gives a result or a chipfit error; file errors are ModelFileErrors (exit 2)."""
    for fn in (load_graph, inspect_model):
        try:
            fn(path)
        except ModelFileError:
            pass
        except ChipfitError as exc:  # e.g. the input-size limit of the inspector: a policy, not a file error
            assert isinstance(exc, MeasurementError) and "elements" in str(exc), repr(exc)


def mutate(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data[: max(0, len(data) - cut)])
    for pos, val in flips:
        if buf:
            buf[pos % len(buf)] = val
    return bytes(buf)


FLIPS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6)


@FUZZ
@given(cut=st.integers(0, 300), flips=FLIPS)
def test_fuzzed_tflite(tmp_path: Path, cut: int, flips: list[tuple[int, int]]) -> None:
    data = mutate(BASELINE_TFLITE.read_bytes(), cut, [(p, v) for p, v in flips if not 4 <= p % 732 < 8])
    path = tmp_path / "fuzz.tflite"
    path.write_bytes(data)
    read_all_ways(path)


@FUZZ
@given(cut=st.integers(0, 200), flips=FLIPS, shape=st.sampled_from([None, [], [1, 10], ["N", 10], [0, 10]]),
       drop=st.sampled_from(["", "node", "input", "output", "init"]))
def test_fuzzed_onnx(tmp_path: Path, cut: int, flips: list[tuple[int, int]], shape: list[object] | None,
                     drop: str) -> None:
    model = gemm_model(shape)  # type: ignore[arg-type]
    field = {"node": model.graph.node, "input": model.graph.input, "output": model.graph.output,
             "init": model.graph.initializer}.get(drop)
    if field is not None:
        del field[:]
    path = tmp_path / "fuzz.onnx"
    path.write_bytes(mutate(model.SerializeToString(), cut, flips))
    read_all_ways(path)


@FUZZ
@given(data=st.binary(max_size=200), tfl=st.booleans())
def test_random_bytes(tmp_path: Path, data: bytes, tfl: bool) -> None:
    if tfl:
        data = data[:4].ljust(4, b"\0") + b"TFL3" + data[4:]
    path = tmp_path / ("x.tflite" if tfl else "x.onnx")
    path.write_bytes(data)
    read_all_ways(path)
    with contextlib.suppress(ModelFileError):
        inspect_model_bytes(data, name="x")
