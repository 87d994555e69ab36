"""Every family's smallest, largest and random configs build and take the preprocessing's output on inputs at the
edges of what a user may bring: very short sensor windows, tiny and non-square images, short low-rate audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chipfit.contract.schema import InputSpec
from chipfit.runtime.preprocess import Preprocessor
from chipfit.space import create_space
from tests.space.test_families_on_shared_data import family_sample

SPECS = [
    InputSpec(modality="series", shape=[8, 1]), InputSpec(modality="series", shape=[33, 2]),
    InputSpec(modality="image", shape=[5, 5, 1]), InputSpec(modality="image", shape=[7, 13, 3]),
    InputSpec(modality="audio", sample_rate_hz=4000, duration_s=0.1),
    InputSpec(modality="audio", sample_rate_hz=16000, duration_s=0.05),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.modality}-{s.shape or (s.sample_rate_hz, s.duration_s)}")
def test_every_family_builds_on_edge_inputs(spec):
    space = create_space(spec, 3)
    rng = np.random.default_rng(0)
    if spec.modality == "audio":
        raw = rng.uniform(-0.5, 0.5, (3, int(spec.sample_rate_hz * spec.duration_s))).astype(np.float32)
    else:
        raw = rng.random((3, *spec.shape)).astype(np.float32)
    for cfg in family_sample(space.families, seed=1):
        shape = space.model_input_shape(cfg)
        pre = Preprocessor.fit(raw, spec.modality, shape, sample_rate_hz=spec.sample_rate_hz,
                               frontend=space.frontend(cfg))
        x = np.ascontiguousarray(pre(raw), np.float32)
        assert x.shape[1:] == tuple(shape[1:]), cfg
        with torch.no_grad():
            assert tuple(space.build(cfg).eval()(torch.from_numpy(x)).shape) == (3, 3), cfg
