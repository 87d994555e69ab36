"""Ablation of the training recipes (``search.recipe``): int8 validation and test accuracy of fixed
architectures trained by the search's own pipeline (CandidateTrainer: recipe, teacher, int8 export, QAT,
ONNX Runtime measurement), with every recipe off ("plain"), with one recipe switched on at a time ("+X"), with
the defaults ("all (defaults)") and with the defaults less one recipe ("all -X"), per seed, at a fixed epoch
budget. "+qat_always" fine-tunes with QAT whenever int8 loses anything (``qat_threshold: 0``), not only when it
loses more than a point.

    .venv/bin/python bench/recipes.py [--datasets digits har] [--seeds 0 1] [--epochs 15] [--out results.json]

Teachers are cached in a temporary folder per invocation (``teacher_cache: run`` under it), so their training
is counted once per dataset, seed and teacher recipe.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OFF = {"one_cycle": False, "label_smoothing": 0.0, "mixup": "off", "specaugment": "off", "balance": "off",
       "distill": False, "qat": False}
ON = {"one_cycle": {"one_cycle": True}, "label_smoothing": {"label_smoothing": 0.1}, "mixup": {"mixup": "auto"},
      "specaugment": {"specaugment": "on"}, "balance": {"balance": "loss"}, "distill": {"distill": True},
      "qat": {"qat": True}, "qat_always": {"qat": True, "qat_threshold": 0.0}}
DATASETS: dict[str, dict[str, Any]] = {
    "digits": {"contract": "examples/digits.yaml",
               "recipes": ["one_cycle", "label_smoothing", "mixup", "distill", "qat", "qat_always"],
               "configs": [{"family": "dscnn", "resolution": 1.0, "width": 16, "blocks": 2, "kernel": 3,
                            "stem_stride": 1, "downsample": 1},
                           {"family": "cnn", "resolution": 1.0, "width": 8, "blocks": 2, "kernel": 3, "stride": 2}]},
    "har": {"contract": "examples/har-nrf52840.yaml",
            "recipes": ["one_cycle", "label_smoothing", "mixup", "balance", "distill", "qat", "qat_always"],
            "configs": [{"family": "cnn", "spectral_bands": 0, "width": 8, "blocks": 2, "kernel": 5, "stride": 2},
                        {"family": "dscnn", "spectral_bands": 0, "width": 16, "blocks": 2, "kernel": 5,
                         "stem_kernel": 5, "stem_stride": 2, "downsample": 1}]},
    "fsdd": {"contract": "examples/fsdd-nrf52840.yaml",
             "recipes": ["one_cycle", "label_smoothing", "specaugment", "distill", "qat", "qat_always"],
             "configs": [{"family": "cnn", "frame_ms": 40, "hop_ms": 40, "n_mfcc": 10, "width": 8, "blocks": 2,
                          "kernel": 3, "stride": 2}]},
}


def variants(recipes: list[str]) -> dict[str, dict[str, Any]]:
    out = {"plain": dict(OFF)}
    for r in recipes:
        out[f"+{r}"] = {**OFF, **ON[r]}
    out["all (defaults)"] = {}
    for r in recipes:
        if r in OFF:
            out[f"all -{r}"] = {r: OFF[r]}
    return out


def run_one(name: str, variant: dict[str, Any], seed: int, epochs: int, root: Path) -> list[dict[str, Any]]:
    from chipfit import load_contract
    from chipfit.data.sources import load_dataset
    from chipfit.quantize.int8 import onnx_accuracy
    from chipfit.search.training import CandidateTrainer
    from chipfit.space.config import ArchConfig

    spec = DATASETS[name]
    recipe = {**variant, "teacher_cache": "run"}
    c = load_contract(ROOT / spec["contract"]).with_updates(
        {"search": {"epochs": epochs, "rung_epochs": 1, "seed": seed, "threads": 1, "recipe": recipe}})
    data = load_dataset(c)
    run = Path(tempfile.mkdtemp(dir=root))
    (run / "teachers").symlink_to(root / f"teachers-{name}")
    ct = CandidateTrainer(c, data, c.get_target(), run)
    rows = []
    for i, cfg in enumerate(spec["configs"]):
        config = ArchConfig.from_dict(cfg)
        base, _ = ct.assess(config, i, train_infeasible=True)
        t0 = time.monotonic()
        rec = ct.train(base, config, prune=False)
        if rec.state != "COMPLETE":
            rows.append({"config": i, "state": rec.state, "reason": rec.reason})
            continue
        pre = ct.prepared(config).pre
        test = onnx_accuracy(run / rec.artifacts["int8"], pre(data.x_test), data.y_test)
        rows.append({"config": i, "state": rec.state, "val_int8": rec.accuracy_int8, "val_float": rec.accuracy_float,
                     "test_int8": test, "epochs": rec.epochs, "seconds": time.monotonic() - t0, "qat": rec.qat,
                     "recipe": rec.recipe})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["digits", "har"], choices=sorted(DATASETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="chipfit-recipes-"))
    results: list[dict[str, Any]] = []
    for name in a.datasets:
        (root / f"teachers-{name}").mkdir()
        for vname, v in variants(DATASETS[name]["recipes"]).items():
            if a.only and vname not in a.only:
                continue
            for seed in a.seeds:
                for row in run_one(name, v, seed, a.epochs, root):
                    results.append({"dataset": name, "variant": vname, "seed": seed, **row})
                    print(json.dumps(results[-1], default=str), flush=True)
                if a.out:
                    a.out.write_text(json.dumps(results, indent=1, default=str))
    print("\n| dataset | variant | int8 val (mean) | int8 test (mean) | draws (test) |")
    print("|---|---|---|---|---|")
    for name in a.datasets:
        for vname in variants(DATASETS[name]["recipes"]):
            rs = [r for r in results if r["dataset"] == name and r["variant"] == vname and r["state"] == "COMPLETE"]
            if not rs:
                continue
            print(f"| {name} | {vname} | {statistics.mean(r['val_int8'] for r in rs):.3f} | "
                  f"{statistics.mean(r['test_int8'] for r in rs):.3f} | "
                  f"{', '.join(format(r['test_int8'], '.3f') for r in rs)} |")


if __name__ == "__main__":
    main()
