"""Runtimes, the interleaved timing loop, model-file validation, fresh-process memory, the host profile."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from chipfit.errors import MeasurementError, UsageError
from chipfit.measure import create_runtime, measure_interleaved
from chipfit.measure.fake import FakeRuntime, fake_model
from chipfit.measure.local import OrtRuntime
from chipfit.measure.modelfile import inspect_model, inspect_model_bytes
from chipfit.measure.record import Measurement


def _matmul(k: int, n: int) -> bytes:
    w = numpy_helper.from_array(np.full((k, n), 0.01, np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])], [w])
    return helper.make_model(g).SerializeToString()


def test_interleaved_measurement_orders_models_and_labels_the_estimator():
    small, big = (inspect_model_bytes(_matmul(64, 64), name="small.onnx"),
                  inspect_model_bytes(_matmul(1024, 1024), name="big.onnx"))
    ms = OrtRuntime().measure_many([small, big], rounds=3, runs=10)
    assert [m.model for m in ms] == ["small.onnx", "big.onnx"]
    assert ms[0].latency_ms < ms[1].latency_ms  # 1 M vs 4 k MACs: no drift can swap them
    for m in ms:
        assert m.source == "measured" and m.runs == 30
        assert m.latency_ms <= m.p50_ms <= m.p90_ms <= m.p99_ms
        assert m.estimator.startswith("min of 30 runs in 3 rounds interleaved")
        assert "onnxruntime" in m.runtime and "1 intra-op thread" in m.runtime
        assert m.input_shapes == ((1, m.input_shapes[0][1]),)  # the dynamic batch dimension became 1
        assert Measurement.from_dict(m.to_dict()) == m


def test_interleaving_rotates_the_order_each_round():
    order: list[str] = []

    class Recording(FakeRuntime):
        def open(self, model, inputs):
            return lambda: order.append(model.name)

    models = [fake_model(10 * (i + 1), name=f"m{i}.onnx") for i in range(3)]
    ticks = iter(range(10**6))
    measure_interleaved(Recording(), models, rounds=3, runs=1, warmup=0, clock=lambda: next(ticks))
    assert order == ["m0.onnx", "m1.onnx", "m2.onnx", "m1.onnx", "m2.onnx", "m0.onnx",
                     "m2.onnx", "m0.onnx", "m1.onnx"]


@pytest.mark.parametrize("estimator,expected", [("min", 1.0), ("median", 3.0)])
def test_estimators_on_a_known_clock(estimator, expected):
    steps = iter([0, 1_000_000, 0, 3_000_000, 0, 5_000_000])  # 1, 3, 5 ms
    m = measure_interleaved(FakeRuntime(), [fake_model(10)], rounds=1, runs=3, warmup=0, estimator=estimator,
                            clock=lambda: next(steps))[0]
    assert m.latency_ms == pytest.approx(expected)
    assert m.p50_ms == pytest.approx(3.0)


def test_bad_settings_and_unknown_runtime_are_usage_errors():
    with pytest.raises(UsageError, match="estimator"):
        OrtRuntime().measure(fake_model(10), estimator="mean")
    with pytest.raises(UsageError, match="rounds"):
        OrtRuntime().measure(fake_model(10), rounds=0)
    with pytest.raises(UsageError, match="Did you mean 'litert'"):
        create_runtime("litrt")


def test_model_files_are_validated_by_content(tmp_path):
    with pytest.raises(MeasurementError, match="not a model"):
        inspect_model_bytes(b"\x00" * 64, name="zeros.onnx")
    with pytest.raises(MeasurementError, match="empty"):
        inspect_model_bytes(b"", name="empty.onnx")
    with pytest.raises(MeasurementError, match="TFLite flatbuffer"):
        inspect_model_bytes(b"\x1c\x00\x00\x00TFL3" + b"\xff" * 40, name="bad.tflite")
    with pytest.raises(MeasurementError, match="no model file"):
        inspect_model(tmp_path / "missing.onnx")
    # external data could point anywhere on the device: refused before any runtime sees it
    model = onnx.load_model_from_string(_matmul(8, 8))
    model.graph.initializer[0].data_location = TensorProto.EXTERNAL
    del model.graph.initializer[0].float_data[:]
    model.graph.initializer[0].ClearField("raw_data")
    entry = model.graph.initializer[0].external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    with pytest.raises(MeasurementError, match="external data"):
        inspect_model_bytes(model.SerializeToString(), name="ext.onnx")
    # a file too big for the limit
    p = tmp_path / "m.onnx"
    p.write_bytes(_matmul(64, 64))
    with pytest.raises(MeasurementError, match="limit"):
        inspect_model(p, max_bytes=100)


def test_runtime_refuses_the_other_format():
    from chipfit.measure.modelfile import ModelFile

    with pytest.raises(MeasurementError, match="use the 'litert' runtime"):
        OrtRuntime().check_kind(ModelFile("x.tflite", "tflite", b"", ()))


def test_fresh_process_memory_grows_with_the_weights():
    small = inspect_model_bytes(_matmul(16, 16), name="small.onnx")
    big = inspect_model_bytes(_matmul(1024, 2048), name="big.onnx")  # 8 MiB of float32 weights
    ms = OrtRuntime().measure_many([small, big], rounds=1, runs=2, memory=True)
    assert ms[0].peak_memory_bytes is not None and ms[1].peak_memory_bytes is not None
    assert ms[1].peak_memory_bytes - ms[0].peak_memory_bytes > 6 * 2**20
    assert "minus an Identity model" in (ms[1].memory_method or "")


def test_litert_measures_a_reference_tflite_model(mlperf_models):
    path = mlperf_models / "kws" / "kws_ref_model.tflite"
    mf = inspect_model(path)
    assert mf.kind == "tflite" and mf.inputs[0].dtype == "int8"
    m = create_runtime("litert").measure(mf, rounds=2, runs=5, memory=True)
    assert m.source == "measured" and "litert" in m.runtime and m.latency_ms > 0
    assert m.peak_memory_bytes is not None and "minus a 1x1 ReLU model's" in (m.memory_method or "")
    with pytest.raises(MeasurementError, match="litert"):
        OrtRuntime().measure(mf)


def test_host_profile_is_measured_once_and_cached(monkeypatch, tmp_path):
    from chipfit.measure import hostprofile

    monkeypatch.setenv("CHIPFIT_CACHE_DIR", str(tmp_path))
    first = hostprofile.host_profile()
    assert first.int8_gmacs > 0 and first.fp32_gmacs > 0 and first.mem_bandwidth_gbps > 0
    assert (tmp_path / "host-profile.json").is_file()
    monkeypatch.setattr(hostprofile, "measure_host", lambda: pytest.fail("measured again instead of cached"))
    assert hostprofile.host_profile() == first
