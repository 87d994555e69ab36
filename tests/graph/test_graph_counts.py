"""MACs and params: exact on the MLPerf Tiny models, and equal across torch / ONNX / TFLite builders."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from chipfit.cli import app
from chipfit.errors import GraphError
from chipfit.graph import from_onnx, from_tflite, from_torch, load_graph
from chipfit.graph.opgraph import OpClass

# From shared/data/mlperf_tiny_models/README.md ("Computed from the files here").
MLPERF = {
    "ic/pretrainedResnet_quant.tflite": (77_706, 12_501_632),
    "kws/kws_ref_model.tflite": (22_604, 2_656_768),
    "vww/vww_96_int8.tflite": (210_850, 7_489_664),
    "ad/ad01_int8.tflite": (265_864, 264_192),
}


@pytest.mark.parametrize("rel", sorted(MLPERF))
def test_mlperf_params_and_macs_exact(mlperf_models, rel):
    params, macs = MLPERF[rel]
    g = from_tflite(mlperf_models / rel)
    assert (g.params, g.macs) == (params, macs)


@pytest.mark.parametrize("rel", sorted(MLPERF))
def test_cli_profile_json_gives_readme_counts(mlperf_models, rel):
    res = CliRunner().invoke(app, ["profile", str(mlperf_models / rel), "--target", "stm32h743", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["params"], data["macs"]) == MLPERF[rel]
    for key in ("flash_bytes", "ram_bytes", "latency_ms", "energy_mj", "target", "runtime", "source", "layers"):
        assert key in data
    assert data["source"] == "predicted"
    layer = data["layers"][0]
    for key in ("name", "op", "macs", "params", "out_shape", "ram_bytes", "latency_ms"):
        assert key in layer
    assert sum(x["macs"] for x in data["layers"]) == data["macs"]


def test_float_and_int8_tflite_agree(mlperf_models):
    a = from_tflite(mlperf_models / "vww/vww_96_int8.tflite")
    b = from_tflite(mlperf_models / "vww/vww_96_float.tflite")
    assert (a.macs, a.params, len(a.nodes)) == (b.macs, b.params, len(b.nodes))


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.dw(torch.relu(self.bn(self.a(x)))))


def _net() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU6(), _Residual(16),
                      nn.Conv2d(16, 24, 1), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Dropout(0.1), nn.Linear(24, 10))
    for mod in m.modules():  # non-trivial BN statistics, so exporters cannot drop the folded bias
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.5, 2)
            mod.bias.data.uniform_(-1, 1)
    return m.eval()


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_onnx_export_matches_torch_module(tmp_path, dynamo):
    m = _net()
    x = torch.zeros(1, 3, 32, 32)
    path = tmp_path / "m.onnx"
    if dynamo:
        torch.onnx.export(m, (x,), str(path), dynamo=True, external_data=False, verbose=False)
    else:
        torch.onnx.export(m, (x,), str(path), dynamo=False)
    gt, go = from_torch(m, (1, 3, 32, 32)), from_onnx(path)
    assert (gt.macs, gt.params) == (go.macs, go.params)
    assert gt.macs_by_class() == go.macs_by_class()
    # hand count: conv 16*16*16*27 + 16*16*16*144 + dw 16*16*16*9 + pw 16*16*24*16 + fc 240
    assert gt.macs == 16 * 16 * 16 * 27 + 16 * 16 * 16 * 144 + 16 * 16 * 16 * 9 + 16 * 16 * 24 * 16 + 24 * 10
    assert gt.params == (16 * 27 + 16) + (16 * 144 + 16) + (16 * 9 + 16) + (24 * 16 + 24) + (240 + 10)


def test_qdq_int8_onnx_has_fp32_counts(tmp_path):
    ort_q = pytest.importorskip("onnxruntime.quantization")
    import numpy as np

    m = _net()
    fp = tmp_path / "m.onnx"
    torch.onnx.export(m, (torch.zeros(1, 3, 32, 32),), str(fp), dynamo=False, input_names=["input"])

    class Reader(ort_q.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = [{"input": np.random.default_rng(i).normal(size=(1, 3, 32, 32)).astype("float32")}
                          for i in range(4)]

        def get_next(self):
            return self.items.pop() if self.items else None

    q = tmp_path / "m.int8.onnx"
    ort_q.quantize_static(str(fp), str(q), Reader(), quant_format=ort_q.QuantFormat.QDQ, per_channel=True)
    a, b = from_onnx(fp), from_onnx(q)
    assert (a.macs, a.params) == (b.macs, b.params)


def test_activation_fused_and_reshape_is_alias():
    g = from_torch(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2)), (1, 1, 8, 8))
    ops = [n.op for n in g.nodes]
    assert ops == [OpClass.CONV, OpClass.RESHAPE, OpClass.DENSE]
    assert g.nodes[0].activation == "relu"


def test_bad_model_files(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(GraphError, match="TFL3"):
        from_tflite(junk)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(GraphError, match="not a readable ONNX"):
        from_onnx(bad)
    with pytest.raises(GraphError, match="unsupported model file"):
        load_graph(tmp_path / "model.pt")
    res = CliRunner().invoke(app, ["profile", str(junk), "--target", "rp2040"])
    assert res.exit_code == 2 and "Traceback" not in res.output  # a bad model file is a usage error


def test_unsupported_op_is_reported(tmp_path):
    import onnx
    import onnx.helper as h

    g = h.make_graph([h.make_node("Relu", ["x"], ["r"]), h.make_node("Erf", ["r"], ["y"])], "g",
                     [h.make_tensor_value_info("x", 1, [1, 8])], [h.make_tensor_value_info("y", 1, [1, 8])])
    p = tmp_path / "erf.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(p))
    res = CliRunner().invoke(app, ["profile", str(p), "--target", "stm32l4r5", "--json"])
    data = json.loads(res.stdout)
    assert any("Erf" in u for u in data["unsupported"])
