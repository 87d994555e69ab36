"""Search spaces per modality: ``sample(trial) -> ArchConfig``, ``build``, ``graph`` (with the front-end).

A ``trial`` is anything with Optuna's ``suggest_categorical`` (an ``optuna.Trial``, or
``optuna.trial.FixedTrial`` to replay a config). Parameters are discrete, so repeated configs can be
recognised by :attr:`ArchConfig.key`.

>>> from chipfit.contract.schema import InputSpec
>>> space = create_space(InputSpec(modality="image", shape=[32, 32, 3]), num_classes=10)
>>> cfg = reference_config("resnet8")
>>> space.graph(cfg).macs
12501632
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from chipfit.contract.schema import InputSpec
from chipfit.graph.opgraph import OpGraph
from chipfit.naming import did_you_mean
from chipfit.runtime.frontend import MfccFrontEnd, SpectralFrontEnd
from chipfit.space.config import ArchConfig


class Trial(Protocol):
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Candidate:
    """What the cost model needs of a sampled architecture."""

    config: ArchConfig
    graph: OpGraph
    frontend_ops: int = 0
    frontend_ram_bytes: int = 0


class SearchSpace(ABC):
    """A modality's families, each a dict of parameter -> choices, every parameter's choices listed cheapest
    first (``spectral_bands`` aside: a representation, not a size), which :meth:`smallest` and the warm start
    (chipfit.search.warmstart) rely on."""

    modality: ClassVar[str]
    families: ClassVar[dict[str, dict[str, list[Any]]]]

    def __init__(self, input_spec: InputSpec, num_classes: int) -> None:
        self.input = input_spec
        self.num_classes = num_classes

    def sample(self, trial: Trial) -> ArchConfig:
        family = trial.suggest_categorical("family", list(self.families))
        params = {k: trial.suggest_categorical(f"{family}.{k}", v) for k, v in self.families[family].items()}
        return ArchConfig(family, {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()})

    def smallest(self) -> list[ArchConfig]:
        """The cheapest config of every family (every parameter at its first, smallest choice)."""
        return [ArchConfig(f, {k: v[0] for k, v in choices.items()}) for f, choices in self.families.items()]

    @abstractmethod
    def model_input_shape(self, config: ArchConfig) -> tuple[int, ...]:
        """Shape of the network input, batch 1 first (channels first)."""

    def frontend(self, config: ArchConfig) -> MfccFrontEnd | SpectralFrontEnd | None:
        return None

    def frontend_cost(self, fe: MfccFrontEnd | SpectralFrontEnd) -> tuple[int, int]:
        """(operations, buffer bytes) of the front-end per inference."""
        sr, dur = self.input.sample_rate_hz or 16000, self.input.duration_s or 1.0
        return fe.ops(sr, dur), fe.buffer_bytes(sr, dur)

    def build(self, config: ArchConfig) -> Any:
        from chipfit.space.families import build_family

        return build_family(config, self.model_input_shape(config), self.num_classes)

    def candidate(self, config: ArchConfig) -> Candidate:
        """Build ``config`` and trace it into an OpGraph (no file written), with front-end costs."""
        from chipfit.graph.torch_trace import from_torch

        graph = from_torch(self.build(config), self.model_input_shape(config), name=f"{config.family}-{config.key}")
        fe = self.frontend(config)
        if fe is None:
            return Candidate(config, graph)
        return Candidate(config, graph, *self.frontend_cost(fe))

    def graph(self, config: ArchConfig) -> OpGraph:
        return self.candidate(config).graph


_CHOICE_BLOCKS = [1, 2, 3, 4, 5, 6]


class ImageSpace(SearchSpace):
    modality = "image"
    families: ClassVar[dict[str, dict[str, list[Any]]]] = {
        "dscnn": {"resolution": [0.5, 0.75, 1.0], "width": [8, 16, 24, 32, 48, 64], "blocks": [1, 2, 3, 4, 5],
                  "kernel": [3, 5], "stem_stride": [2, 1], "downsample": [3, 2, 1]},
        "mbv2": {"resolution": [0.5, 0.75, 1.0], "width": [8, 12, 16, 24, 32], "blocks": [2, 3, 4, 5, 6],
                 "expand": [2, 3, 4, 6], "kernel": [3, 5], "downsample": [3, 2, 1]},
        "cnn": {"resolution": [0.5, 0.75, 1.0], "width": [4, 8, 12, 16, 24, 32], "blocks": [1, 2, 3, 4],
                "kernel": [3, 5], "stride": [2]},
        # MLPerf Tiny's ResNet-8 (one basic block per stage) with each stage's width searched; its largest choices
        # are ResNet-8 itself, so the warm start shrinks the reference (chipfit.search.warmstart)
        "resnet": {"resolution": [0.5, 0.75, 1.0], "width": [8, 12, 16], "width2": [16, 24, 32],
                   "width3": [32, 48, 64]},
    }

    def model_input_shape(self, config: ArchConfig) -> tuple[int, ...]:
        h, w, c = ([*list(self.input.shape or [8, 8, 1]), 1, 1])[:3]
        r = float(config.params.get("resolution", 1.0))
        return (1, c, max(4, round(h * r)), max(4, round(w * r)))


class AudioSpace(SearchSpace):
    """Audio: an MFCC / log-mel front-end (searched) feeding a 2D network over [frames x features]."""

    modality = "audio"
    families: ClassVar[dict[str, dict[str, list[Any]]]] = {
        "dscnn": {"frame_ms": [30, 40], "hop_ms": [40, 32, 20], "n_mfcc": [10, 13, 20], "width": [16, 24, 32, 48, 64],
                  "blocks": [1, 2, 3, 4], "kernel": [3], "stem_kernel": ["3x3", "10x4"], "stem_stride": [2],
                  "downsample": [1, 0]},
        "cnn": {"frame_ms": [30, 40], "hop_ms": [40, 32, 20], "n_mfcc": [10, 13, 20], "width": [8, 12, 16, 24],
                "blocks": [2, 3, 4], "kernel": [3], "stride": [2]},
    }

    def frontend(self, config: ArchConfig) -> MfccFrontEnd | None:
        if self.input.shape is not None:  # features already computed by the user
            return None
        p = config.params
        return MfccFrontEnd(float(p.get("frame_ms", 40)), float(p.get("hop_ms", 20)), 40, int(p.get("n_mfcc", 10)))

    def model_input_shape(self, config: ArchConfig) -> tuple[int, ...]:
        fe = self.frontend(config)
        if fe is None:
            shape = list(self.input.shape or [49, 10])
            return (1, 1, shape[0], shape[1] if len(shape) > 1 else 1)
        frames, feats = fe.output_shape(self.input.sample_rate_hz or 16000, self.input.duration_s or 1.0)
        return (1, 1, frames, feats)


class SeriesSpace(SearchSpace):
    """Sensor windows [T, C]: 1D networks over time, or over a spectral front-end (``spectral_bands`` > 0)."""

    modality = "series"
    families: ClassVar[dict[str, dict[str, list[Any]]]] = {
        "cnn": {"spectral_bands": [0, 32, 64], "width": [4, 8, 16, 24, 32], "blocks": [1, 2, 3, 4],
                "kernel": [3, 5, 7, 9], "stride": [2]},
        "dscnn": {"spectral_bands": [0, 32, 64], "width": [8, 16, 24, 32, 48], "blocks": [1, 2, 3, 4],
                  "kernel": [3, 5, 7, 9], "stem_kernel": [5, 9], "stem_stride": [4, 2], "downsample": [2, 1, 0]},
    }

    def __init__(self, input_spec: InputSpec, num_classes: int) -> None:
        super().__init__(input_spec, num_classes)
        # propose only what can be built for this input: no more bands than the window's FFT has bins
        bins = SpectralFrontEnd.bins(self._window()[0])
        self.families = {f: {**p, "spectral_bands": [b for b in p["spectral_bands"] if b <= bins]}
                         for f, p in type(self).families.items()}

    def _window(self) -> tuple[int, int]:
        t, c = [*list(self.input.shape or [128, 3]), 1][:2]
        return int(t), int(c)

    def frontend(self, config: ArchConfig) -> SpectralFrontEnd | None:
        bands = int(config.params.get("spectral_bands", 0) or 0)
        return SpectralFrontEnd(bands) if bands else None

    def frontend_cost(self, fe: MfccFrontEnd | SpectralFrontEnd) -> tuple[int, int]:
        t, c = self._window()
        return fe.ops(t, c), fe.buffer_bytes(t, c)  # type: ignore[arg-type]

    def model_input_shape(self, config: ArchConfig) -> tuple[int, ...]:
        t, c = self._window()
        fe = self.frontend(config)
        if fe is not None:
            t, c = fe.output_shape(t, c)
        return (1, c, t)


SPACES: dict[str, type[SearchSpace]] = {s.modality: s for s in (ImageSpace, AudioSpace, SeriesSpace)}


def create_space(input_spec: InputSpec, num_classes: int) -> SearchSpace:
    """The search space for the contract's input modality."""
    return SPACES[input_spec.modality](input_spec, num_classes)


@functools.cache
def _references() -> dict[str, tuple[str, ArchConfig]]:
    return {
        "dscnn-kws": ("audio", ArchConfig("dscnn", {"width": 64, "blocks": 4, "kernel": 3, "stem_kernel": "10x4",
                                                    "stem_stride": 2, "downsample": 0, "frame_ms": 40, "hop_ms": 20,
                                                    "n_mfcc": 10})),
        "resnet8": ("image", ArchConfig("resnet", {"width": 16, "width2": 32, "width3": 64})),
        "mobilenetv1-0.25": ("image", ArchConfig("mobilenetv1", {"alpha": 0.25, "blocks": 13})),
        "cnn1d-har": ("series", ArchConfig("cnn", {"width": 16, "blocks": 3, "kernel": 5, "stride": 2})),
    }


def reference_names() -> list[str]:
    return sorted(_references())


def reference_config(name: str) -> ArchConfig:
    """A named reference architecture (MLPerf Tiny DS-CNN, ResNet-8, MobileNetV1-0.25, a 1D CNN)."""
    refs = _references()
    if name not in refs:
        raise KeyError(f"unknown reference architecture '{name}'; known: {', '.join(sorted(refs))}."
                       f"{did_you_mean(name, refs)}")
    return refs[name][1]


def reference_modality(name: str) -> str:
    reference_config(name)
    return _references()[name][0]
