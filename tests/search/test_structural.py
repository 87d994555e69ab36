"""A family that fails for a structural reason is excluded once: one FAILED record, a log line, ``excluded.json``,
and none of its later samples trained or recorded."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch import nn

from chipfit import create_run
from chipfit.search.structural import structural_cause
from chipfit.space import families
from tests.search.small_sensor import write_small_sensor


class _ShapeBug(nn.Module):
    """Traces (batch 1, as pricing does) but fails on a training batch as a shape bug would."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (8x12 and 16x10)")
        return self.inner(x)


@pytest.mark.slow
def test_a_structural_failure_excludes_its_family_once(tmp_path, monkeypatch, caplog):
    real = families.FAMILIES["cnn"]
    monkeypatch.setitem(families.FAMILIES, "cnn", lambda *a: _ShapeBug(real(*a)))
    path = write_small_sensor(tmp_path, search={"trials": 6, "epochs": 2, "rung_epochs": 1, "threads": 1,
                                                "sampler": "random", "calibration_samples": 32})
    with caplog.at_level(logging.WARNING, logger="chipfit"):
        run = create_run(path, out=tmp_path / "run").search()
    recs = run.candidates
    cnn = [r for r in recs if r.config["family"] == "cnn"]
    assert len(cnn) == 1 and cnn[0].state == "FAILED", [(r.config["family"], r.state) for r in recs]
    assert any(r.state == "COMPLETE" for r in recs)
    excluded = json.loads((run.dir / "excluded.json").read_text())
    assert set(excluded) == {"cnn"} and excluded["cnn"]["candidate"] == cnn[0].id
    assert excluded["cnn"]["cause"] == "shape"
    assert excluded["cnn"]["skipped"] >= 1  # sampled again, neither trained nor recorded
    assert sum("family 'cnn' excluded" in m for m in caplog.messages) == 1


@pytest.mark.parametrize(("reason", "kind", "cause"), [
    ("build: KeyError: 'width'", "candidate", "build"),
    ("InvalidArgument: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x for the "
     "following indices index: 2 Got: 64 Expected: 51", "candidate", "shape"),
    ("RuntimeError: Calculated padded input size per channel: (2). Kernel size: (3). Kernel size can't be greater "
     "than actual input size", "candidate", "shape"),
    ("RuntimeError: Function 'ConvolutionBackward0' returned nan values", "candidate", None),
    ("OSError: [Errno 28] No space left on device", "environment", None),
])
def test_structural_causes(reason, kind, cause):
    assert structural_cause("FAILED", kind, reason) == cause
    assert structural_cause("COMPLETE", None, reason) is None
