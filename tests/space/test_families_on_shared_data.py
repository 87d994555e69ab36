"""No candidate of any family fails for a shape reason on the data it is meant for: for every example contract,
on its real data (shared datasets through the ``shared_data`` fixture, which skips when they are absent), a
sample of every family's configs (its smallest, its largest and random ones) builds, takes the shipped
preprocessing's output, exports to ONNX, quantizes to int8 with real calibration rows, runs in ONNX Runtime and
is priced on the contract's target."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from chipfit.contract.loader import load_contract
from chipfit.contract.target import resolve_target
from chipfit.data.sources import load_dataset
from chipfit.pricing import Pricer
from chipfit.quantize.int8 import export_onnx, predict_onnx, quantize_int8
from chipfit.runtime.preprocess import Preprocessor
from chipfit.space import ArchConfig, create_space

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHARED_PREFIX = "../../shared/data/"
RANDOM_PER_FAMILY = 3
ROWS = 8


def _contract_file(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    data = doc["task"]["data"]
    if "path" in data:
        shared: Path = request.getfixturevalue("shared_data")
        data["path"] = str(shared / data["path"].removeprefix(SHARED_PREFIX))
        if not Path(data["path"]).exists():
            pytest.skip(f"{data['path']} is not in the shared data")
    if isinstance(doc["target"], str) and doc["target"].endswith(".yaml"):
        doc["target"] = str(EXAMPLES / doc["target"])
    out = tmp_path / name
    out.write_text(yaml.safe_dump(doc))
    return out


def family_sample(families: dict[str, dict[str, list]], seed: int = 0) -> list[ArchConfig]:
    """Per family: every parameter at its first choice, every one at its last, and random combinations."""
    rng = random.Random(seed)
    out: dict[str, ArchConfig] = {}
    for fam, choices in families.items():
        picks = [{k: v[0] for k, v in choices.items()}, {k: v[-1] for k, v in choices.items()}]
        picks += [{k: rng.choice(v) for k, v in choices.items()} for _ in range(RANDOM_PER_FAMILY)]
        for p in picks:
            cfg = ArchConfig(fam, p)
            out.setdefault(cfg.key, cfg)
    return list(out.values())


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_family_builds_exports_and_quantizes_on_the_examples_data(name, tmp_path, request):
    contract = load_contract(_contract_file(name, tmp_path, request))
    data = load_dataset(contract)
    space = create_space(contract.input_spec(), data.num_classes)
    pricer = Pricer(space, resolve_target(contract), dtype=contract.dtype)
    rows = data.x_train[:ROWS]
    configs = family_sample(space.families)
    assert {c.family for c in configs} == set(space.families)
    failures: list[str] = []
    for i, cfg in enumerate(configs):
        try:
            shape = space.model_input_shape(cfg)
            pre = Preprocessor.fit(data.x_train[:64], data.modality, shape, sample_rate_hz=data.sample_rate_hz,
                                   frontend=space.frontend(cfg), raw=data.raw)
            x = np.ascontiguousarray(pre(rows), np.float32)
            assert x.shape[1:] == tuple(shape[1:]), f"preprocessing gives {x.shape[1:]}, the model takes {shape[1:]}"
            model = space.build(cfg).eval()
            with torch.no_grad():
                out = model(torch.from_numpy(x))
            assert tuple(out.shape) == (len(x), data.num_classes)
            fp32 = export_onnx(model, shape, tmp_path / f"{i}.onnx")
            int8 = quantize_int8(fp32, tmp_path / f"{i}.int8.onnx", x)
            assert predict_onnx(int8, x).shape == (len(x),)  # predicted labels
            assert pricer.price(cfg).cost.latency_ms > 0
        except Exception as exc:  # collect every failure, then report them together
            failures.append(f"{cfg.to_dict()}: {type(exc).__name__}: {exc}")
    assert not failures, f"{name}: {len(failures)} of {len(configs)} configs failed:\n" + "\n".join(failures)
