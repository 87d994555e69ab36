"""DSP front-ends (log-mel / MFCC) as part of a candidate: output shape, compute and buffer cost.

The cost counts against the budgets: the front-end runs on the device before every inference.
Operation counts follow the textbook algorithm (radix-2 real FFT ~ 2.5 N log2 N real ops per frame
including the window, power spectrum, triangular mel filterbank over the N/2+1 bins, log, DCT-II).

>>> fe = MfccFrontEnd(frame_ms=40, hop_ms=20, n_mels=40, n_mfcc=10)
>>> fe.output_shape(sample_rate_hz=16000, duration_s=1.0)
(49, 10)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MfccFrontEnd:
    frame_ms: float = 40.0
    hop_ms: float = 20.0
    n_mels: int = 40
    n_mfcc: int = 10  # 0 = log-mel output (no DCT)

    def frames(self, sample_rate_hz: float, duration_s: float) -> int:
        samples = round(sample_rate_hz * duration_s)
        frame = self.frame_len(sample_rate_hz)
        hop = max(1, round(sample_rate_hz * self.hop_ms / 1000))
        return max(1, 1 + (samples - frame) // hop)

    def frame_len(self, sample_rate_hz: float) -> int:
        return max(8, round(sample_rate_hz * self.frame_ms / 1000))

    def n_fft(self, sample_rate_hz: float) -> int:
        return 1 << math.ceil(math.log2(self.frame_len(sample_rate_hz)))

    def output_shape(self, sample_rate_hz: float, duration_s: float) -> tuple[int, int]:
        return self.frames(sample_rate_hz, duration_s), (self.n_mfcc or self.n_mels)

    def ops(self, sample_rate_hz: float, duration_s: float) -> int:
        """Arithmetic operations per inference (multiply-adds and friends)."""
        n = self.n_fft(sample_rate_hz)
        per_frame = 2.5 * n * math.log2(n) + n + (n // 2 + 1) * 2 + (n // 2 + 1) * 2 + self.n_mels * 10
        if self.n_mfcc:
            per_frame += self.n_mels * self.n_mfcc
        return int(per_frame * self.frames(sample_rate_hz, duration_s))

    def buffer_bytes(self, sample_rate_hz: float, duration_s: float) -> int:
        """RAM the front-end holds: the raw audio window (int16), one FFT frame (int32 complex) and the
        feature map it fills (int8)."""
        samples = round(sample_rate_hz * duration_s)
        n = self.n_fft(sample_rate_hz)
        frames, feats = self.output_shape(sample_rate_hz, duration_s)
        return samples * 2 + n * 4 * 2 + frames * feats

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class SpectralFrontEnd:
    """Spectral features for sensor / vibration windows: per channel, the log power of the window's real
    FFT averaged into ``bands`` equal-width bands. Output ``[bands, channels]`` (a short 1-D series).

    >>> SpectralFrontEnd(bands=64).output_shape(window=2048, channels=1)
    (64, 1)
    """

    bands: int = 64

    @staticmethod
    def bins(window: int) -> int:
        """Frequency bins of the window's real FFT, zero-padded to a power of two (as computed).

        >>> SpectralFrontEnd.bins(100), SpectralFrontEnd.bins(2048)
        (65, 1025)
        """
        return (1 << math.ceil(math.log2(max(window, 2)))) // 2 + 1

    def output_shape(self, window: int, channels: int) -> tuple[int, int]:
        return min(self.bands, self.bins(window)), channels

    def ops(self, window: int, channels: int) -> int:
        n = 1 << math.ceil(math.log2(max(window, 2)))
        return int(channels * (2.5 * n * math.log2(n) + 3 * (n // 2 + 1) + self.bands * 10))

    def buffer_bytes(self, window: int, channels: int) -> int:
        """The raw window (int16 per sample and channel) plus one complex FFT buffer (int32 pairs)."""
        n = 1 << math.ceil(math.log2(max(window, 2)))
        return window * channels * 2 + n * 8 + self.bands * channels

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
