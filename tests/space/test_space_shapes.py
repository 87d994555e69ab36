"""Every search space proposes only what can be built for its input: for every example contract's input, sampled
configs (and each family's smallest) build, and the shipped preprocessing feeds the network the shape it takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

from chipfit.contract.schema import InputSpec
from chipfit.runtime.preprocess import Preprocessor
from chipfit.space import create_space

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def _raw(spec: InputSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    if spec.modality == "audio":
        return rng.uniform(-0.5, 0.5, (n, int((spec.sample_rate_hz or 16000) * (spec.duration_s or 1.0))))
    return rng.random((n, *spec.shape)).astype(np.float32)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_sampled_configs_build_and_take_the_preprocessed_shape(example: Path):
    doc = yaml.safe_load(example.read_text())
    spec = InputSpec.model_validate(doc["task"].get("input") or {"modality": "image", "shape": [8, 8, 1]})
    space = create_space(spec, 4)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = {c.key: c for c in space.smallest()}
    for _ in range(12):
        c = space.sample(study.ask())
        configs.setdefault(c.key, c)
    rng = np.random.default_rng(0)
    raw = _raw(spec, 3, rng).astype(np.float32)
    for cfg in configs.values():
        shape = space.model_input_shape(cfg)
        pre = Preprocessor.fit(raw, spec.modality, shape, sample_rate_hz=spec.sample_rate_hz,
                               frontend=space.frontend(cfg))
        x = pre(raw)
        assert x.shape[1:] == shape[1:], (cfg, x.shape, shape)
        with torch.no_grad():
            out = space.build(cfg).eval()(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        assert tuple(out.shape) == (3, 4), cfg


def test_a_short_sensor_window_gets_no_band_count_above_its_fft_bins():
    space = create_space(InputSpec(modality="series", shape=[40, 6]), 4)  # 64-point FFT: 33 bins
    for family in space.families.values():
        assert family["spectral_bands"] == [0, 32]


def test_the_model_takes_what_the_front_end_gives_on_a_100_sample_window():
    from chipfit.space import ArchConfig

    space = create_space(InputSpec(modality="series", shape=[100, 6]), 4)
    cfg = ArchConfig("cnn", {"spectral_bands": 64, "width": 8, "blocks": 2, "kernel": 3, "stride": 2})
    raw = np.random.default_rng(0).random((3, 100, 6)).astype(np.float32)
    pre = Preprocessor.fit(raw, "series", space.model_input_shape(cfg), frontend=space.frontend(cfg))
    assert pre(raw).shape[1:] == space.model_input_shape(cfg)[1:] == (6, 64)  # was (6, 64) vs (6, 51)
