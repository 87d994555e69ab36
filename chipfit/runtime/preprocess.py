"""Preprocessing from raw samples to network input, in numpy only (the device-side Predictor reuses it).

Two steps, both in the shipped recipe:

1. :class:`RawInput` says what one *raw* sample is — what the sensor or file gives (dtype, shape, layout, value
   range) — and how the data source scaled it into chipfit's canonical range (``canonical = raw * scale +
   offset``: images in [0, 1], audio in [-1, 1], series as given). The built-in digits are raw 0-16 values with
   ``scale = 1/16``; 8-bit images 0-255 with ``1/255``; int16 PCM audio with ``1/32768``.
2. A :class:`Preprocessor` is fitted on the (canonical) training split (normalisation statistics) for one
   candidate's input settings: image resolution, or the audio front-end (MFCC / log-mel), or nothing for
   series. ``pre(x)`` takes canonical data (as the trainer holds it); ``pre.from_raw(x)`` takes raw samples
   (as the device gets them). Its ``to_dict()`` is the exact recipe that ships in the manifest.

>>> raw = RawInput(shape=(8, 8, 1), layout="HWC", dtype="float64", range=(0.0, 16.0), scale=1 / 16)
>>> float(raw.to_canonical(np.full((1, 8, 8, 1), 16.0)).max())
1.0
>>> raw.check(np.zeros(64))  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
chipfit.runtime.preprocess.InputError: expected shape [8, 8, 1] (one sample) or [N, 8, 8, 1] (a batch); given (64,) ...

>>> import numpy as np
>>> from chipfit.runtime.frontend import MfccFrontEnd, SpectralFrontEnd
>>> x = np.random.default_rng(0).normal(size=(4, 16000)).astype("float32") * 0.1
>>> mfcc(x, 16000, MfccFrontEnd(40, 20, 40, 10)).shape
(4, 49, 10)
"""

from __future__ import annotations

import functools
import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.fft import dct

from chipfit.errors import ChipfitError
from chipfit.runtime.frontend import MfccFrontEnd, SpectralFrontEnd


class InputError(ChipfitError, ValueError):
    """Raw input that does not match the model's input contract (shape, dtype, or range with ``strict=True``)."""


class InputRangeWarning(UserWarning):
    """Raw input outside the value range the model was trained on (filter it like any warning)."""


#: values may leave the stated range by this fraction of its width before a warning (rounding, resampling)
RANGE_TOLERANCE = 0.01


@dataclass(frozen=True)
class RawInput:
    """What one raw sample is and how it maps to the canonical range: ``canonical = raw * scale + offset``.

    ``range`` is ``"nominal"`` when it is the full scale of the format (uint8 pixels 0-255, the digits' 0-16,
    PCM): a value outside it means the input is not what the model was trained on, so :meth:`check` warns
    (:class:`InputRangeWarning`) or, with ``strict``, raises. It is ``"observed"`` when it is only the min / max
    of the training data (arrays of floats, sensor series): values outside it are possible in the field, so they
    are logged by the drift monitor, not warned about. ``example`` is one line of Python giving one raw sample.
    """

    shape: tuple[int, ...]
    layout: str
    dtype: str = "float32"
    range: tuple[float, float] | None = None
    range_kind: str = "nominal"
    scale: float = 1.0
    offset: float = 0.0
    sample_rate_hz: float | None = None
    description: str = ""
    example: str = ""

    def to_canonical(self, x: np.ndarray) -> np.ndarray:
        """Raw samples -> the canonical float32 values the network was trained on."""
        x = np.asarray(x, np.float32)
        if self.scale == 1.0 and self.offset == 0.0:
            return x
        inv = 1.0 / self.scale
        if abs(inv - round(inv)) < 1e-9:  # x / 255 exactly as the data source divided (x * (1/255) may differ)
            out = np.divide(x, np.float32(round(inv)), dtype=np.float32)
        else:
            out = np.multiply(x, np.float32(self.scale), dtype=np.float32)
        if self.offset:
            out += np.float32(self.offset)
        return out

    def from_canonical(self, x: np.ndarray) -> np.ndarray:
        """Canonical values -> raw samples in ``dtype`` (rounded for integer dtypes): the inverse of the scaling."""
        raw = (np.asarray(x, np.float64) - self.offset) / self.scale
        dt = np.dtype(self.dtype)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            raw = np.clip(np.rint(raw), info.min, info.max)
        return raw.astype(dt)

    def expected(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"[{dims}] (one sample) or [N, {dims}] (a batch)"

    def check(self, x: np.ndarray, *, strict: bool = False, where: str = "Predictor input") -> tuple[np.ndarray, bool]:
        """Validate raw input against this contract; returns ``(batch, single)``.

        Shape and dtype are errors (:class:`InputError`) that say what was expected; a value outside a nominal
        range is an :class:`InputRangeWarning` (an :class:`InputError` with ``strict``), with a hint when the
        input looks already scaled (e.g. digits divided by 16: pass the raw values, the recipe scales them).
        """
        arr = np.asarray(x)
        if arr.dtype.kind not in "iuf":
            raise InputError(f"{where}: expected numbers ({self.dtype}, {self.describe_range()}); given an array "
                             f"of dtype {arr.dtype}. Convert it with np.asarray(x, np.{self.dtype}).")
        shape = tuple(self.shape)
        if arr.shape == shape:
            batch, single = arr[None], True
        elif arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
            batch, single = arr, False
        else:
            hint, n = "", int(np.prod(shape))
            k = len(shape) - 1
            if k and shape[-1] == 1 and arr.ndim in (k, k + 1) and arr.shape[arr.ndim - k:] == shape[:-1]:
                hint = " Add the channel axis: x[..., None]."
            elif arr.size and arr.size % n == 0:
                dims = ", ".join(str(d) for d in shape)
                hint = (f" If it holds {arr.size // n} sample(s) in layout {self.layout}, reshape it: "
                        f"x.reshape(-1, {dims}).")
            raise InputError(f"{where}: expected shape {self.expected()}, layout {self.layout}; given "
                             f"{arr.shape}.{hint}")
        if batch.size and self.range is not None and self.range_kind == "nominal":
            self._check_range(batch, strict=strict, where=where)
        return batch, single

    def describe_range(self) -> str:
        if self.range is None:
            return "any range"
        lo, hi = self.range
        return f"values in [{lo:g}, {hi:g}] ({self.range_kind})"

    def _check_range(self, batch: np.ndarray, *, strict: bool, where: str) -> None:
        lo, hi = self.range or (-np.inf, np.inf)
        tol = RANGE_TOLERANCE * (hi - lo)
        vmin, vmax = float(np.min(batch)), float(np.max(batch))
        if not (np.isfinite(vmin) and np.isfinite(vmax)):
            raise InputError(f"{where}: expected finite {self.describe_range()}; given NaN or infinite values.")
        msg = ""
        if vmin < lo - tol or vmax > hi + tol:
            msg = (f"{where}: expected raw {self.describe_range()}; given values in [{vmin:g}, {vmax:g}]. Predictions "
                   f"on such input are unreliable: pass what the sensor gives ({self.description or self.dtype}; the "
                   f"recipe scales it by {self.scale:g} as in training).")
        elif hi - lo >= 2 and lo >= 0 and 0 < vmax <= 1.0 and batch.dtype.kind == "f":
            msg = (f"{where}: expected raw {self.describe_range()}; given values in [{vmin:g}, {vmax:g}], which look "
                   f"already scaled to [0, 1]. Pass the raw values: the recipe multiplies by {self.scale:g} itself.")
        if msg and strict:
            raise InputError(msg)
        if msg:
            warnings.warn(msg, InputRangeWarning, stacklevel=5)  # the caller of Predictor.predict

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "layout": self.layout, "dtype": self.dtype,
                "range": list(self.range) if self.range is not None else None, "range_kind": self.range_kind,
                "scale": self.scale, "offset": self.offset, "sample_rate_hz": self.sample_rate_hz,
                "description": self.description, "example": self.example}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RawInput:
        rng = d.get("range")
        return cls(tuple(int(v) for v in d["shape"]), str(d["layout"]), str(d.get("dtype", "float32")),
                   (float(rng[0]), float(rng[1])) if rng is not None else None, str(d.get("range_kind", "nominal")),
                   float(d.get("scale", 1.0)), float(d.get("offset", 0.0)), d.get("sample_rate_hz"),
                   str(d.get("description", "")), str(d.get("example", "")))


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
    raw: RawInput | None = None  # what a raw sample is and its scaling; None in recipes from before it was stated

    @classmethod
    def fit(cls, x_train: np.ndarray, modality: str, input_shape: tuple[int, ...], *,
            sample_rate_hz: float | None = None, frontend: MfccFrontEnd | SpectralFrontEnd | None = None,
            raw: RawInput | None = None) -> Preprocessor:
        """Fit the normalisation on the canonical training split ``x_train`` (``raw`` says how it was scaled)."""
        bare = cls(modality, tuple(input_shape), sample_rate_hz, frontend)
        feats = bare._features(x_train[:2000])
        axes = tuple(i for i in range(feats.ndim) if i != 1)  # per channel (image, series) / per row (audio)
        if modality == "audio":
            axes = (0, 1, 2)
        mean = feats.mean(axis=axes)
        std = feats.std(axis=axes) + 1e-6
        return cls(modality, tuple(input_shape), sample_rate_hz, frontend,
                   tuple(float(v) for v in np.atleast_1d(mean)), tuple(float(v) for v in np.atleast_1d(std)), raw)

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

    def from_raw(self, x: np.ndarray) -> np.ndarray:
        """Raw batch (as the sensor gives it, see :attr:`raw`) -> normalised float32 network input."""
        return self(self.raw.to_canonical(x) if self.raw is not None else x)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Canonical batch (as the data source loads it) -> normalised float32 network input."""
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
                "layout": "NCHW" if len(self.input_shape) == 4 else "NCT",
                "raw": self.raw.to_dict() if self.raw is not None else None}

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
        raw = RawInput.from_dict(d["raw"]) if d.get("raw") else None
        return cls(d["modality"], tuple(d["input_shape"]), d.get("sample_rate_hz"), frontend,
                   tuple(d.get("mean", ())), tuple(d.get("std", ())), raw)

    @classmethod
    def load(cls, path: str | Path) -> Preprocessor:
        """Read a ``preprocess.json`` recipe written by a run."""
        import json

        p = Path(path)
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ChipfitError(f"{p}: not a readable preprocessing recipe ({type(exc).__name__}: {exc}).") from None
