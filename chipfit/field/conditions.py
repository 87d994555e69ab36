"""Field conditions: named, seeded transforms of raw input batches, each with a severity scale.

``apply(batch, severity, rng)`` takes raw samples in chipfit's canonical layout — images ``[N, H, W, C]`` in
[0, 1], audio ``[N, samples]`` in [-1, 1], sensor windows ``[N, T, C]`` — and returns a new array. The same
transforms serve training augmentation and the robustness evaluation.

All transforms are written here on numpy / scipy / Pillow with an explicit ``numpy.random.Generator``:
augmentation libraries such as audiomentations draw from the global ``random`` / ``numpy.random`` state,
which makes a robustness figure impossible to reproduce call by call.

>>> import numpy as np
>>> x = np.full((2, 8, 8, 3), 0.5, np.float32)
>>> create_condition("brightness").apply(x, 0.5, np.random.default_rng(0)).max()
np.float32(0.25)
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from chipfit.field.catalog import CONDITIONS
from chipfit.naming import did_you_mean


@dataclass(frozen=True)
class FieldCondition(ABC):
    name: str
    modality: str
    severity_meaning: str
    grid: tuple[float, ...]  # default severities for a robustness grid (mild -> harsh)
    sample_rate_hz: float | None = None

    @abstractmethod
    def apply(self, batch: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
        """Return a transformed copy of ``batch``."""

    def with_sample_rate(self, sample_rate_hz: float | None) -> FieldCondition:
        from dataclasses import replace

        return replace(self, sample_rate_hz=sample_rate_hz)


_REGISTRY: dict[str, Callable[[], FieldCondition]] = {}


def register_condition(factory: Callable[[], FieldCondition]) -> Callable[[], FieldCondition]:
    cond = factory()
    if cond.name not in CONDITIONS:
        raise ValueError(f"condition '{cond.name}' is not in chipfit.field.catalog")
    _REGISTRY[cond.name] = factory
    return factory


def create_condition(name: str, *, sample_rate_hz: float | None = None) -> FieldCondition:
    """The registered condition ``name`` (did-you-mean on unknown names)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown field condition '{name}'.{did_you_mean(name, _REGISTRY)} "
                       f"Known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]().with_sample_rate(sample_rate_hz)


def list_conditions(modality: str | None = None) -> list[str]:
    return sorted(n for n, f in _REGISTRY.items() if modality is None or f().modality == modality)


def _simple(name: str, modality: str, grid: tuple[float, ...],
            fn: Callable[[np.ndarray, float, np.random.Generator, float | None], np.ndarray]) -> None:
    meaning = CONDITIONS[name].severity

    @dataclass(frozen=True)
    class _Cond(FieldCondition):
        def apply(self, batch: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
            return fn(np.asarray(batch, np.float32), float(severity), rng, self.sample_rate_hz).astype(np.float32)

    _Cond.__name__ = f"Condition_{name}"
    register_condition(lambda: _Cond(name, modality, meaning, grid))


# -- image: [N, H, W, C] in [0, 1] -------------------------------------------------------------------------------
def _jpeg(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    from PIL import Image

    quality = int(np.clip(round(95 - 90 * s), 5, 95))
    out = np.empty_like(x)
    for i, img in enumerate(x):
        arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        mode = "L" if arr.shape[-1] == 1 else "RGB"
        buf = io.BytesIO()
        Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(buf, format="JPEG", quality=quality)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float32) / 255.0
        out[i] = dec[..., None] if mode == "L" else dec
    return out


def _defocus(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    r = max(s, 0.5)
    k = int(np.ceil(r + 0.5))
    yy, xx = np.mgrid[-k:k + 1, -k:k + 1]
    disk = np.clip(r + 0.5 - np.sqrt(xx**2 + yy**2), 0, 1).astype(np.float32)  # anti-aliased disk
    disk /= disk.sum()
    return ndimage.convolve(x, disk[None, :, :, None], mode="nearest")


def _motion(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    n = max(1, round(s))
    kernel = np.full((1, 1, n, 1), 1.0 / n, np.float32)
    return ndimage.convolve(x, kernel, mode="nearest")


def _occlusion(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    out = x.copy()
    _, h, w, _ = x.shape
    ph, pw = max(1, round(h * np.sqrt(s))), max(1, round(w * np.sqrt(s)))
    for i in range(len(x)):
        y0, x0 = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
        out[i, y0:y0 + ph, x0:x0 + pw] = 0.5
    return out


_simple("gaussian_noise", "image", (0.04, 0.08, 0.16),
        lambda x, s, rng, _: np.clip(x + rng.normal(0, s, x.shape), 0, 1))
_simple("shot_noise", "image", (0.02, 0.05, 0.1),
        lambda x, s, rng, _: np.clip(rng.poisson(np.clip(x, 0, 1) / max(s, 1e-3)) * max(s, 1e-3), 0, 1))
_simple("brightness", "image", (0.5, 0.7, 1.4), lambda x, s, rng, _: np.clip(x * s, 0, 1))
def _contrast(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip((x - mean) * s + mean, 0, 1)


_simple("contrast", "image", (0.4, 0.6, 1.5), _contrast)
_simple("gamma", "image", (0.5, 1.5, 2.2), lambda x, s, rng, _: np.clip(x, 0, 1) ** s)
_simple("defocus_blur", "image", (0.75, 1.25, 2.0), _defocus)
_simple("motion_blur", "image", (2, 3, 5), _motion)
_simple("jpeg", "image", (0.5, 0.8, 0.95), _jpeg)
_simple("occlusion", "image", (0.05, 0.1, 0.2), _occlusion)
_simple("haze", "image", (0.2, 0.35, 0.5), lambda x, s, rng, _: x * (1 - s) + 0.8 * s)


# -- audio: [N, samples] in [-1, 1] ------------------------------------------------------------------------------
def _rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(x**2, axis=1, keepdims=True)) + 1e-8


def _at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    noise = noise / _rms(noise) * _rms(x) / (10 ** (snr_db / 20))
    return np.clip(x + noise, -1, 1)


def _pink(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    white = rng.normal(size=shape)
    spec = np.fft.rfft(white, axis=1)
    f = np.arange(spec.shape[1], dtype=np.float32)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n=shape[1], axis=1).astype(np.float32)


def _babble(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    """Background chatter: each clip gets the sum of 4 other (time-shifted) clips of the batch at the SNR."""
    n = len(x)
    noise = np.zeros_like(x)
    for _ in range(4):
        idx = (np.arange(n) + rng.integers(1, max(n, 2))) % n
        noise += np.roll(x[idx], rng.integers(0, x.shape[1]), axis=1)
    return _at_snr(x, noise + 1e-6 * rng.normal(size=x.shape), s)


def _shift(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    k = round(s * x.shape[1])
    out = np.zeros_like(x)
    if k >= 0:
        out[:, k:] = x[:, : x.shape[1] - k]
    else:
        out[:, :k] = x[:, -k:]
    return out


def _band_limit(x: np.ndarray, s: float, rng: np.random.Generator, sr: float | None) -> np.ndarray:
    sr = sr or 16000.0
    cutoff = min(max(s, 50.0), 0.45 * sr)
    sos = signal.butter(4, cutoff, btype="low", fs=sr, output="sos")
    return signal.sosfiltfilt(sos, x, axis=1)


def _reverb(x: np.ndarray, s: float, rng: np.random.Generator, sr: float | None) -> np.ndarray:
    """Exponentially decaying noise impulse response with the given RT60, 30 % wet."""
    sr = sr or 16000.0
    n = max(8, int(sr * min(s, 1.5)))
    t = np.arange(n) / sr
    ir = rng.normal(size=n) * np.exp(-6.91 * t / max(s, 1e-3))
    ir[0] = 1.0
    ir /= np.sqrt(np.sum(ir**2))
    wet = signal.fftconvolve(x, ir[None], axes=1)[:, : x.shape[1]]
    return np.clip(0.7 * x + 0.3 * wet / (_rms(wet) / _rms(x)), -1, 1)


_simple("background_noise", "audio", (20, 10, 5), lambda x, s, rng, _: _at_snr(x, rng.normal(size=x.shape), s))
_simple("pink_noise", "audio", (20, 10, 5), lambda x, s, rng, _: _at_snr(x, _pink(x.shape, rng), s))
_simple("babble", "audio", (20, 10, 5), _babble)
_simple("gain_db", "audio", (-12, -6, 6), lambda x, s, rng, _: np.clip(x * 10 ** (s / 20), -1, 1))
_simple("time_shift", "audio", (0.05, 0.1, 0.2), _shift)
_simple("clipping", "audio", (0.5, 0.25, 0.1),
        lambda x, s, rng, _: np.clip(x, -s * np.abs(x).max(axis=1, keepdims=True),
                                     s * np.abs(x).max(axis=1, keepdims=True)))
_simple("band_limit", "audio", (4000, 2000, 1000), _band_limit)
_simple("reverb", "audio", (0.2, 0.4, 0.8), _reverb)


# -- sensor windows: [N, T, C] ----------------------------------------------------------------------------------
def _std(x: np.ndarray) -> np.ndarray:
    return x.std(axis=(0, 1), keepdims=True) + 1e-6


def _spikes(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    hit = rng.random(x.shape) < s
    return np.where(hit, x + rng.choice([-5.0, 5.0], size=x.shape) * _std(x), x)


def _dropout(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    """Missing samples hold the last valid value (what most sensor drivers do)."""
    miss = rng.random(x.shape[:2]) < s
    miss[:, 0] = False
    idx = np.where(miss, 0, np.arange(x.shape[1])[None, :])
    idx = np.maximum.accumulate(idx, axis=1)
    return np.take_along_axis(x, idx[..., None].repeat(x.shape[2], axis=2), axis=1)


def _saturation(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    mean, lim = x.mean(axis=(0, 1), keepdims=True), s * _std(x)
    return np.clip(x, mean - lim, mean + lim)


def _misalign(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    """Rotate each 3-axis group (accelerometer, gyroscope) about z by ``s`` degrees."""
    out = x.copy()
    a = np.deg2rad(s)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], np.float32)
    for g in range(0, x.shape[2] - 2, 3):
        out[..., g:g + 3] = x[..., g:g + 3] @ rot.T
    return out


def _jitter(x: np.ndarray, s: float, rng: np.random.Generator, _sr: float | None) -> np.ndarray:
    t = np.arange(x.shape[1], dtype=np.float32)
    out = np.empty_like(x)
    for i in range(len(x)):
        tj = np.clip(t + rng.uniform(-s, s, size=t.shape), 0, t[-1])
        for c in range(x.shape[2]):
            out[i, :, c] = np.interp(tj, t, x[i, :, c])
    return out


_simple("offset_drift", "series", (0.25, 0.5, 1.0), lambda x, s, rng, _: x + s * _std(x))
_simple("gain_drift", "series", (0.1, 0.2, 0.4), lambda x, s, rng, _: x * (1 + s))
_simple("additive_noise", "series", (0.1, 0.25, 0.5),
        lambda x, s, rng, _: x + rng.normal(size=x.shape) * s * _std(x))
_simple("spikes", "series", (0.005, 0.01, 0.03), _spikes)
_simple("dropout", "series", (0.05, 0.1, 0.25), _dropout)
_simple("saturation", "series", (2.0, 1.5, 1.0), _saturation)
_simple("axis_misalignment", "series", (5, 10, 20), _misalign)
_simple("sampling_jitter", "series", (0.1, 0.25, 0.5), _jitter)
