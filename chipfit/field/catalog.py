"""Names of the field conditions a contract may declare, with their modality and severity scale.

The transforms themselves (``apply(batch, severity, rng)``) are registered against these names by the
robustness stage; the contract only needs to know which names exist and what their severity means.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConditionInfo:
    name: str
    modality: str
    severity: str  # what the number means


_CONDITIONS = [
    ConditionInfo("gaussian_noise", "image", "noise std as a fraction of the pixel range"),
    ConditionInfo("shot_noise", "image", "photons per unit intensity (lower is noisier), as 1/severity"),
    ConditionInfo("brightness", "image", "multiplicative factor (0.5 dim .. 1.5 bright)"),
    ConditionInfo("contrast", "image", "contrast factor around the mean"),
    ConditionInfo("gamma", "image", "gamma exponent"),
    ConditionInfo("defocus_blur", "image", "blur radius in pixels"),
    ConditionInfo("motion_blur", "image", "blur length in pixels"),
    ConditionInfo("jpeg", "image", "JPEG-like quality loss 0..1"),
    ConditionInfo("occlusion", "image", "occluded area fraction"),
    ConditionInfo("haze", "image", "haze opacity 0..1"),
    ConditionInfo("background_noise", "audio", "SNR in dB (white noise)"),
    ConditionInfo("pink_noise", "audio", "SNR in dB (pink noise)"),
    ConditionInfo("babble", "audio", "SNR in dB (mixture of other samples)"),
    ConditionInfo("gain_db", "audio", "gain change in dB"),
    ConditionInfo("time_shift", "audio", "shift as a fraction of the clip"),
    ConditionInfo("clipping", "audio", "clipping level as a fraction of full scale"),
    ConditionInfo("band_limit", "audio", "upper cut-off in Hz (cheap microphone)"),
    ConditionInfo("reverb", "audio", "reverberation time RT60 in seconds"),
    ConditionInfo("offset_drift", "series", "offset in units of the channel's std"),
    ConditionInfo("gain_drift", "series", "relative gain change"),
    ConditionInfo("additive_noise", "series", "noise std in units of the channel's std"),
    ConditionInfo("spikes", "series", "fraction of samples hit by spikes"),
    ConditionInfo("dropout", "series", "fraction of samples missing"),
    ConditionInfo("saturation", "series", "clip level in units of the channel's std"),
    ConditionInfo("axis_misalignment", "series", "rotation in degrees"),
    ConditionInfo("sampling_jitter", "series", "timing jitter as a fraction of the sample period"),
]
CONDITIONS: dict[str, ConditionInfo] = {c.name: c for c in _CONDITIONS}
