"""Preprocessing from raw samples to network input, in numpy only (the device-side Predictor reuses it).

A :class:`Preprocessor` is fitted on the training split (normalisation statistics) for one candidate's
input settings: image resolution, or the audio front-end (MFCC / log-mel), or nothing for series. Its
``to_dict()`` is the exact recipe that ships in the manifest.

>>> import numpy as np
>>> from chipfit.runtime.frontend import MfccFrontEnd, SpectralFrontEnd
>>> x = np.random.default_rng(0).normal(size=(4, 16000)).astype("float32") * 0.1
>>> mfcc(x, 16000, MfccFrontEnd(40, 20, 40, 10)).shape
(4, 49, 10)
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.fft import dct

from chipfit.runtime.frontend import MfccFrontEnd, SpectralFrontEnd


@functools.lru_cache(maxsize=32)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: float, fmin: float = 20.0,
                   fmax: float | None = None) -> np.ndarray:
    """HTK-style triangular mel filterbank, shape [n_mels, n_fft // 2 + 1]."""
    fmax = fmax or sample_rate / 2

    def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    mels = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    fb = np.zeros((n_mels, len(bins)), np.float32)
    for m in range(n_mels):
        lo, ce, hi = hz[m], hz[m + 1], hz[m + 2]
        up = (bins - lo) / max(ce - lo, 1e-9)
        down = (hi - bins) / max(hi - ce, 1e-9)
        fb[m] = np.clip(np.minimum(up, down), 0, None)
    return fb


def mfcc(x: np.ndarray, sample_rate: float, fe: MfccFrontEnd) -> np.ndarray:
    """MFCC (or log-mel when ``fe.n_mfcc == 0``) of audio ``[N, samples]`` -> ``[N, frames, features]``."""
    x = np.asarray(x, np.float32)
    if x.ndim == 1:
        x = x[None]
    frame = fe.frame_len(sample_rate)
    hop = max(1, round(sample_rate * fe.hop_ms / 1000))
    frames = fe.frames(sample_rate, x.shape[1] / sample_rate)
    n_fft = fe.n_fft(sample_rate)
    need = (frames - 1) * hop + frame
    if x.shape[1] < need:
        x = np.pad(x, ((0, 0), (0, need - x.shape[1])))
    idx = np.arange(frame)[None, :] + hop * np.arange(frames)[:, None]
    windows = x[:, idx] * np.hanning(frame).astype(np.float32)
    power = np.abs(np.fft.rfft(windows, n=n_fft, axis=-1)) ** 2
    logmel = np.log(power @ mel_filterbank(fe.n_mels, n_fft, float(sample_rate)).T + 1e-6)
    if fe.n_mfcc:
        return dct(logmel, type=2, norm="ortho", axis=-1)[..., : fe.n_mfcc].astype(np.float32)
    return logmel.astype(np.float32)


def spectral(x: np.ndarray, fe: SpectralFrontEnd) -> np.ndarray:
    """Band-averaged log power spectrum of windows ``[N, T, C]`` -> ``[N, bands, C]``."""
    x = np.asarray(x, np.float32)
    n = 1 << int(np.ceil(np.log2(max(x.shape[1], 2))))
    power = np.abs(np.fft.rfft(x - x.mean(axis=1, keepdims=True), n=n, axis=1)) ** 2
    bands = min(fe.bands, power.shape[1])
    edges = np.linspace(0, power.shape[1], bands + 1).astype(int)
    out = np.stack([power[:, a:max(b, a + 1)].mean(axis=1) for a, b in itertools.pairwise(edges)], 1)
    return np.log(out + 1e-6).astype(np.float32)


def resize_bilinear(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of images ``[N, H, W, C]`` (align-corners=False), numpy only."""
    _n, ih, iw, _c = x.shape
    if (ih, iw) == (h, w):
        return x

    def axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, wy = axis(ih, h)
    x0, x1, wx = axis(iw, w)
    rows = x[:, y0] * (1 - wy)[None, :, None, None] + x[:, y1] * wy[None, :, None, None]
    return rows[:, :, x0] * (1 - wx)[None, None, :, None] + rows[:, :, x1] * wx[None, None, :, None]


@dataclass(frozen=True)
class Preprocessor:
    """Raw samples -> network input (channels first), with normalisation fitted on the training split."""

    modality: str
    input_shape: tuple[int, ...]  # network input, batch 1 first
    sample_rate_hz: float | None = None
    frontend: MfccFrontEnd | SpectralFrontEnd | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @classmethod
    def fit(cls, x_train: np.ndarray, modality: str, input_shape: tuple[int, ...], *,
            sample_rate_hz: float | None = None, frontend: MfccFrontEnd | SpectralFrontEnd | None = None
            ) -> Preprocessor:
        bare = cls(modality, tuple(input_shape), sample_rate_hz, frontend)
        feats = bare._features(x_train[:2000])
        axes = tuple(i for i in range(feats.ndim) if i != 1)  # per channel (image, series) / per row (audio)
        if modality == "audio":
            axes = (0, 1, 2)
        mean = feats.mean(axis=axes)
        std = feats.std(axis=axes) + 1e-6
        return cls(modality, tuple(input_shape), sample_rate_hz, frontend,
                   tuple(float(v) for v in np.atleast_1d(mean)), tuple(float(v) for v in np.atleast_1d(std)))

    def _features(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.modality == "image":
            x = resize_bilinear(x, self.input_shape[2], self.input_shape[3])
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self.modality == "series":
            if isinstance(self.frontend, SpectralFrontEnd):
                x = spectral(x, self.frontend)
            return np.ascontiguousarray(x.transpose(0, 2, 1))
        if self.frontend is not None:
            return mfcc(x, self.sample_rate_hz or 16000, self.frontend)[:, None]
        return x.reshape(len(x), *self.input_shape[1:])

    @functools.cached_property
    def _scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """(1 / std, -mean / std) shaped to broadcast over the network input (computed once)."""
        shape = [1, -1] + [1] * (len(self.input_shape) - 2) if self.modality != "audio" else [1, 1, 1, -1]
        mean = np.asarray(self.mean, np.float32).reshape(shape)
        inv = (1.0 / np.asarray(self.std, np.float32)).reshape(shape)
        return inv, -mean * inv

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Raw batch -> normalised float32 network input."""
        f = self._features(x)
        if not self.mean:
            return f.astype(np.float32, copy=False)
        inv, shift = self._scale_shift
        out = np.multiply(f, inv, dtype=np.float32)
        out += shift
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "input_shape": list(self.input_shape),
                "sample_rate_hz": self.sample_rate_hz,
                "frontend": self._frontend_dict(),
                "mean": list(self.mean), "std": list(self.std),
                "layout": "NCHW" if len(self.input_shape) == 4 else "NCT"}

    def _frontend_dict(self) -> dict[str, Any] | None:
        fe = self.frontend
        if fe is None:
            return None
        if isinstance(fe, SpectralFrontEnd):
            return {"kind": "spectral", **fe.to_dict()}
        return {"kind": "mfcc" if fe.n_mfcc else "logmel", **fe.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        fe = d.get("frontend")
        frontend: MfccFrontEnd | SpectralFrontEnd | None = None
        if fe and fe["kind"] == "spectral":
            frontend = SpectralFrontEnd(int(fe["bands"]))
        elif fe:
            frontend = MfccFrontEnd(fe["frame_ms"], fe["hop_ms"], fe["n_mels"], fe["n_mfcc"])
        return cls(d["modality"], tuple(d["input_shape"]), d.get("sample_rate_hz"), frontend,
                   tuple(d.get("mean", ())), tuple(d.get("std", ())))

    @classmethod
    def load(cls, path: str | Path) -> Preprocessor:
        """Read a ``preprocess.json`` recipe written by a run."""
        import json

        p = Path(path)
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            from chipfit.errors import ChipfitError

            raise ChipfitError(f"{p}: not a readable preprocessing recipe ({type(exc).__name__}: {exc}).") from None
