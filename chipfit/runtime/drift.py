"""Drift monitor: cheap per-sample statistics of the raw input (and the model's confidence) compared with
the training distribution over a window, by the Population Stability Index (PSI).

The alarm threshold is calibrated on held-out clean data: random windows of clean samples give the null
distribution of the window score (the largest PSI over features); the threshold is its ``1 - false_alarm_rate``
quantile, so clean data raises an alarm at about that rate. When it fires, the monitor names the feature
that moved most.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = DriftReference.fit("series", rng.normal(size=(2000, 50, 2)), rng.normal(size=(1000, 50, 2)), window=50)
>>> mon = DriftMonitor(ref)
>>> mon.update(rng.normal(size=(50, 50, 2)) + 2.0).alarm
True
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BINS = 10
EPS = 1e-4


def features(modality: str, x: np.ndarray, sample_rate_hz: float | None = None) -> tuple[list[str], np.ndarray]:
    """Per-sample summary statistics of a raw batch -> (names, ``[N, F]``)."""
    x = np.asarray(x, np.float32)
    if modality == "image":  # [N, H, W, C]
        c = x.shape[-1]
        mean, std = x.mean(axis=(1, 2)), x.std(axis=(1, 2))
        grad = np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))[:, None]
        names = [f"mean[{i}]" for i in range(c)] + [f"std[{i}]" for i in range(c)] + ["sharpness"]
        return names, np.concatenate([mean, std, grad], 1)
    if modality == "audio":  # [N, samples]
        rms = np.log10(np.sqrt((x**2).mean(axis=1)) + 1e-6)
        zcr = (np.abs(np.diff(np.sign(x), axis=1)) > 0).mean(axis=1)
        spec = np.abs(np.fft.rfft(x[:, :: max(1, x.shape[1] // 2048)], axis=1))
        freq = np.linspace(0, 1, spec.shape[1])
        centroid = (spec * freq).sum(axis=1) / (spec.sum(axis=1) + 1e-9)
        peak = np.abs(x).max(axis=1)
        return ["log_rms", "zero_crossing_rate", "spectral_centroid", "peak"], np.stack([rms, zcr, centroid, peak], 1)
    c = x.shape[-1]  # series [N, T, C]
    return ([f"mean[{i}]" for i in range(c)] + [f"std[{i}]" for i in range(c)],
            np.concatenate([x.mean(axis=1), x.std(axis=1)], 1))


def _hist(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` [N, F] in each of the BINS bins per feature -> [F, BINS]."""
    out = np.empty((values.shape[1], BINS))
    for f in range(values.shape[1]):
        idx = np.clip(np.searchsorted(edges[f], values[:, f], side="right"), 0, BINS - 1)
        out[f] = np.bincount(idx, minlength=BINS) / max(len(values), 1)
    return out


def psi(window: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """PSI per feature between window shares [F, B] and reference shares [F, B]."""
    w, r = np.clip(window, EPS, None), np.clip(ref, EPS, None)
    return ((w - r) * np.log(w / r)).sum(axis=1)


@dataclass(frozen=True)
class DriftReference:
    modality: str
    names: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]  # inner bin edges per feature (BINS - 1 values)
    reference: tuple[tuple[float, ...], ...]  # reference shares per feature
    threshold: float
    window: int
    false_alarm_rate: float
    sample_rate_hz: float | None = None

    @classmethod
    def fit(cls, modality: str, x_train: np.ndarray, x_holdout: np.ndarray, *, window: int = 64,
            false_alarm_rate: float = 0.01, confidence_train: np.ndarray | None = None,
            confidence_holdout: np.ndarray | None = None, sample_rate_hz: float | None = None,
            windows: int = 500, seed: int = 0) -> DriftReference:
        names, f_train = features(modality, x_train, sample_rate_hz)
        _, f_hold = features(modality, x_holdout, sample_rate_hz)
        if confidence_train is not None and confidence_holdout is not None:
            names = [*names, "confidence"]
            f_train = np.concatenate([f_train, confidence_train[:, None]], 1)
            f_hold = np.concatenate([f_hold, confidence_holdout[:, None]], 1)
        qs = np.linspace(0, 1, BINS + 1)[1:-1]
        edges = np.quantile(f_train, qs, axis=0).T  # [F, BINS - 1]
        ref = _hist(f_train, edges)
        rng = np.random.default_rng(seed)
        scores = [psi(_hist(f_hold[rng.integers(0, len(f_hold), window)], edges), ref).max() for _ in range(windows)]
        threshold = float(np.quantile(scores, 1 - false_alarm_rate))
        return cls(modality, tuple(names), tuple(tuple(map(float, e)) for e in edges),
                   tuple(tuple(map(float, r)) for r in ref), threshold, window, false_alarm_rate, sample_rate_hz)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftReference:
        return cls(d["modality"], tuple(d["names"]), tuple(tuple(e) for e in d["edges"]),
                   tuple(tuple(r) for r in d["reference"]), d["threshold"], d["window"], d["false_alarm_rate"],
                   d.get("sample_rate_hz"))


@dataclass(frozen=True)
class DriftStatus:
    score: float  # largest PSI over features in the current window
    threshold: float
    alarm: bool
    feature: str | None  # the feature that moved most
    samples: int  # samples in the current window


class DriftMonitor:
    """Keeps the last ``window`` samples' features; ``update`` returns the current status."""

    def __init__(self, reference: DriftReference) -> None:
        self.ref = reference
        self.edges = np.asarray(reference.edges)
        self.shares = np.asarray(reference.reference)
        self.buffer: deque[np.ndarray] = deque(maxlen=reference.window)
        self.uses_confidence = reference.names[-1] == "confidence"

    def update(self, raw: np.ndarray, confidence: np.ndarray | None = None) -> DriftStatus:
        _, f = features(self.ref.modality, raw, self.ref.sample_rate_hz)
        if self.uses_confidence:
            conf = np.full(len(f), np.nan) if confidence is None else np.asarray(confidence, float)
            f = np.concatenate([f, conf[:, None]], 1)
        self.buffer.extend(f)
        return self.status()

    def status(self) -> DriftStatus:
        if len(self.buffer) < self.ref.window:
            return DriftStatus(0.0, self.ref.threshold, False, None, len(self.buffer))
        values = np.asarray(self.buffer)
        cols = [i for i in range(values.shape[1]) if not np.isnan(values[:, i]).any()]
        scores = psi(_hist(values[:, cols], self.edges[cols]), self.shares[cols])
        k = int(np.argmax(scores))
        score = float(scores[k])
        return DriftStatus(score, self.ref.threshold, score > self.ref.threshold, self.ref.names[cols[k]],
                           len(values))

    def reset(self) -> None:
        self.buffer.clear()
