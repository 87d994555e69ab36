"""What the firmware tests share: the MLPerf Tiny model paths and why the farm cannot run here."""

from __future__ import annotations

MLPERF = {"ic": "ic/pretrainedResnet_quant.tflite", "kws": "kws/kws_ref_model.tflite",
          "vww": "vww/vww_96_int8.tflite", "ad": "ad/ad01_int8.tflite"}


def farm_missing(qemu: bool = True) -> str | None:
    """Why the firmware tests cannot run here, or None."""
    from chipfit.firmware.sources import tflm_source
    from chipfit.firmware.toolchain import FirmwareError, missing
    from chipfit.measure.tflm import available

    why = missing(qemu)
    if why:
        return f"{why} (the firmware tests need them)"
    try:
        tflm_source(fetch=False)
    except FirmwareError as e:
        return str(e)
    return available()
