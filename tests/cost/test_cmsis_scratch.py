"""CMSIS-NN's scratch buffers per instruction set (Helium/MVE, DSP, plain C), on made-up layer shapes: each
expected figure is worked out by hand from ``../shared/third_party/tflm/third_party/cmsis_nn/Source/*/
arm_*_get_buffer_sizes_s8.c`` (GCC build), as ``chipfit.cost.arena`` cites them; and the OpGraph path (the cost
model during search) follows the core's code path as the ``.tflite`` path does."""

from __future__ import annotations

from pathlib import Path

import pytest

from chipfit.cost.arena import (
    avgpool_s8_scratch,
    cmsis_isa,
    conv_s8_scratch,
    depthwise_s8_scratch,
    fully_connected_s8_scratch,
    lstm_scratch,
    svdf_s8_scratch,
    tflm_arena,
    tflm_ram,
)
from chipfit.errors import GraphError


def test_core_decides_the_code_path() -> None:
    assert [cmsis_isa(c) for c in ("cortex-m55", "m85", "cortex-m4", "cortex-m7", "cortex-m33")] == [
        "mve", "mve", "dsp", "dsp", "dsp"]
    assert [cmsis_isa(c) for c in ("cortex-m0plus", "cortex-m3", "m0", "cortex-m23")] == ["none"] * 4
    with pytest.raises(GraphError, match="Cortex-M"):
        cmsis_isa("cortex-a72")
    with pytest.raises(GraphError, match="mve, dsp, none"):
        conv_s8_scratch("neon", in_hwc=(8, 8, 8), filter_hwc=(3, 3, 8), out_hw=(8, 8))


def test_convolution_im2col() -> None:
    # 3x3 x 8 channels = 72 columns: MVE 4 columns of ceil(72/16) = 5 lanes of 16 bytes; DSP/C 2 x 72 int16
    kw = {"in_hwc": (16, 16, 8), "filter_hwc": (3, 3, 8), "out_hw": (16, 16), "padding": (1, 1)}
    assert conv_s8_scratch("mve", **kw) == 4 * 5 * 16 == 320
    assert conv_s8_scratch("dsp", **kw) == conv_s8_scratch("none", **kw) == 2 * 72 * 2 == 288
    # 3 input channels, 27 columns: MVE 4 x 2 lanes x 16; DSP aligns 27 up to 28
    kw = {"in_hwc": (32, 32, 3), "filter_hwc": (3, 3, 3), "out_hw": (16, 16), "stride": (2, 2)}
    assert conv_s8_scratch("mve", **kw) == 128
    assert conv_s8_scratch("dsp", **kw) == 2 * 28 * 2 == 112


@pytest.mark.parametrize("isa", ["mve", "dsp", "none"])
def test_pointwise_convolution_needs_no_scratch(isa: str) -> None:
    assert conv_s8_scratch(isa, in_hwc=(8, 8, 16), filter_hwc=(1, 1, 16), out_hw=(8, 8)) == 0
    assert conv_s8_scratch(isa, in_hwc=(8, 8, 16), filter_hwc=(1, 1, 16), out_hw=(4, 4), stride=(2, 2)) == 0
    # padded 1x1 is not arm_nn_is_convolve_1x1: the im2col path
    assert conv_s8_scratch(isa, in_hwc=(8, 8, 16), filter_hwc=(1, 1, 16), out_hw=(10, 10), padding=(1, 1)) > 0


def test_one_by_n_convolution_on_mve() -> None:
    # height 1, 8 channels, kernel 1x3, SAME (pad 1 each side), stride 1, width 32:
    # left = right = 1 padded outputs, 30 unpadded; max(3*8 + 1*8, 2*8 + 1*8) = 32
    kw = {"in_hwc": (1, 32, 8), "filter_hwc": (1, 3, 8), "out_hw": (1, 32), "padding": (0, 1)}
    assert conv_s8_scratch("mve", **kw) == 32
    assert conv_s8_scratch("dsp", **kw) == 2 * 24 * 2 == 96  # DSP: 1xN uses the im2col size
    # VALID, width 10, kernel 3, stride 2 -> width 4; total padding -1 (C remainder -1): one right-padded output,
    # pad_right = 1 x 4 channels; max(3*4 + 0, 2*4 + 4) = 12
    assert conv_s8_scratch("mve", in_hwc=(1, 10, 4), filter_hwc=(1, 3, 4), out_hw=(1, 4), stride=(2, 2)) == 12
    # (stride x channels) % 4 != 0: not a 1xN convolution, MVE im2col of 9 columns -> 4 x 1 lane x 16
    assert conv_s8_scratch("mve", in_hwc=(1, 32, 3), filter_hwc=(1, 3, 3), out_hw=(1, 32), padding=(0, 1)) == 64


def test_depthwise() -> None:
    same3 = {"in_hwc": (16, 16, 32), "kernel_hw": (3, 3), "out_c": 32, "out_w": 16, "padding": (1, 1)}
    assert depthwise_s8_scratch("mve", **same3) == 4 * 124 * 9 == 4464  # CH_IN_BLOCK_MVE, every kernel size
    assert depthwise_s8_scratch("dsp", **same3) == 0  # arm_depthwise_conv_3x3_s8
    assert depthwise_s8_scratch("none", **same3) == 0
    five = {**same3, "kernel_hw": (5, 5), "padding": (2, 2)}
    assert depthwise_s8_scratch("mve", **five) == 4 * 124 * 25
    assert depthwise_s8_scratch("dsp", **five) == 32 * 25 * 2
    assert depthwise_s8_scratch("none", **five) == 0
    # 3x3 with padding 2 (dilated-like SAME on a big stride) is not the 3x3 kernel on DSP
    assert depthwise_s8_scratch("dsp", **{**same3, "padding": (2, 2)}) == 32 * 9 * 2
    # dilation or a batch > 1: no opt kernel, no scratch
    assert depthwise_s8_scratch("mve", **same3, dilation=(2, 2)) == 0
    assert depthwise_s8_scratch("mve", **same3, batch=2) == 0
    # channel multiplier 2 (8 -> 16): none on any core
    assert depthwise_s8_scratch("mve", in_hwc=(8, 8, 8), kernel_hw=(3, 3), out_c=16, out_w=8) == 0
    # one input channel, 8 outputs, MVE: runs as a convolution (im2col of 9 columns = 64) + 8 x 9 weights
    one = {"in_hwc": (16, 16, 1), "kernel_hw": (3, 3), "out_c": 8, "out_w": 16, "padding": (1, 1)}
    assert depthwise_s8_scratch("mve", **one) == 64 + 72
    assert depthwise_s8_scratch("dsp", **one) == 0


def test_fully_connected_pooling_svdf_lstm() -> None:
    assert fully_connected_s8_scratch("mve", accum_depth=640, out_depth=128) == [512]  # kernel sums, int32
    assert fully_connected_s8_scratch("dsp", accum_depth=640, out_depth=128) == []
    assert fully_connected_s8_scratch("none", accum_depth=640, out_depth=128) == []
    # rank-3 output, depth % 4 == 0: the 1x1-convolution path, per-tensor weights fake per-channel parameters
    for isa in ("mve", "dsp", "none"):
        assert fully_connected_s8_scratch(isa, accum_depth=64, out_depth=10, out_rank=3) == [80]
        assert fully_connected_s8_scratch(isa, accum_depth=64, out_depth=10, out_rank=3, per_channel=True) == []
    assert fully_connected_s8_scratch("mve", accum_depth=63, out_depth=10, out_rank=3) == [40]
    assert (avgpool_s8_scratch("mve", 64), avgpool_s8_scratch("dsp", 64), avgpool_s8_scratch("none", 64)) == (
        0, 256, 0)
    assert svdf_s8_scratch("mve", batch=2, num_filters=32, num_units=8) == [256, 64, 128]
    assert svdf_s8_scratch("dsp", batch=2, num_filters=32, num_units=8) == [256, 64]
    assert lstm_scratch(batch=2, state_dim=16) == [64] * 3
    assert lstm_scratch(batch=1, state_dim=16, cell_bytes=4, int_kernels=False) == [64] * 4


# TFLM's arena_used_bytes() of the firmware (TFLM + CMSIS-NN, GCC) on QEMU, measured 2026-11-30 with
# `chipfit measure MODEL --board qemu:<core>`; tests/firmware/test_arena_cores.py measures them again where the
# farm is installed.
MEASURED = {"kws/kws_ref_model.tflite": {"mve": 27_300, "dsp": 22_820, "none": 22_820},
            "ic/pretrainedResnet_quant.tflite": {"mve": 54_996, "dsp": 54_996, "none": 54_980},
            "vww/vww_96_int8.tflite": {"mve": 100_756, "dsp": 100_708, "none": 100_708},
            "ad/ad01_int8.tflite": {"mve": 5_172, "dsp": 2_580, "none": 2_580}}


@pytest.mark.parametrize("model", sorted(MEASURED))
def test_mlperf_tiny_arena_per_code_path(mlperf_models: Path, model: str) -> None:
    from chipfit.graph import from_tflite

    g = from_tflite(mlperf_models / model)
    sizes = {t: info.nbytes() for t, info in g.tensors.items()}
    for isa, want in MEASURED[model].items():
        a = tflm_arena(mlperf_models / model, kernels="cmsis-nn", isa=isa)
        assert a.total == want, (model, isa)
        assert a.isa == isa and a.to_dict()["isa"] == isa
        # the cost model's path (an OpGraph from the same file): the same plan
        p, _, _ = tflm_ram(g, lambda t, s=sizes: s.get(t, 0), kernels="cmsis-nn", isa=isa)
        assert p.arena == a.planned, (model, isa)


def test_cost_model_arena_follows_the_targets_core(mlperf_models: Path) -> None:
    """The cost model prices TFLM's RAM with the target core's CMSIS-NN code path: kws on a Cortex-M55 board
    (Helium) plans the MVE scratch buffers, on a Cortex-M4 board the DSP ones (the figures measured above)."""
    from chipfit.cost.model import CostModel
    from chipfit.graph import from_tflite
    from chipfit.targets import create_target

    g = from_tflite(mlperf_models / "kws/kws_ref_model.tflite")
    m = CostModel(auto_calibration=False)
    m55 = m.estimate(g, create_target("alif-e7"), runtime="tflm-cmsis-nn")
    m4 = m.estimate(g, create_target("stm32l4r5"), runtime="tflm-cmsis-nn")
    for cost, isa in ((m55, "mve"), (m4, "dsp")):
        assert cost.arena_bytes == tflm_arena(mlperf_models / "kws/kws_ref_model.tflite", kernels="cmsis-nn",
                                              isa=isa).planned
    assert m55.arena_bytes > m4.arena_bytes


def test_c_header_states_the_arena_of_the_targets_core(mlperf_models: Path) -> None:
    """The C array's CHIPFIT_TENSOR_ARENA_SIZE follows the target's core: kws needs 27,300 bytes (and the
    planning room) on a Cortex-M55, 22,820 on a Cortex-M4."""
    from chipfit.export.c_array import tflm_arena_size

    kws = mlperf_models / "kws/kws_ref_model.tflite"
    m55, note55 = tflm_arena_size(kws, core="cortex-m55")
    m4, note4 = tflm_arena_size(kws, core="cortex-m4")
    default, _ = tflm_arena_size(kws)
    assert m55 >= 27_300 and m4 >= 22_820 and m55 - m4 >= 27_300 - 22_820 - 16
    assert default == m4 and m55 % 16 == 0
    assert "Helium/MVE" in note55 and "DSP code path" in note4
