"""Field conditions as a design input: the model found without vs with the declared conditions.

For the CIFAR subset (image), the Speech Commands subset (audio) and HAR (sensor), two runs with the same
cost budgets, data, seed and time: **without** (conditions only evaluated at the end; the search optimises
clean int8 accuracy) and **with** (conditions as training augmentation and a field-accuracy budget, so the
search optimises field accuracy). Reported: clean and field (mean and worst over the condition grid) int8
test accuracy of each winner. Goal: a clear field-accuracy gain for at most 1 point of clean accuracy.
Run: ``python bench/robustness.py [--minutes 4]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # repo root first (bench/profile.py shadows stdlib)

import argparse
import json
import tempfile

import yaml

from bench._report import table, write_section
from chipfit import load_contract
from chipfit.run import Run

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "cifar-h743": ([{"name": "gaussian_noise", "range": [0.02, 0.1]}, {"name": "brightness", "range": [0.5, 1.5]},
                    {"name": "defocus_blur", "range": [0.5, 1.5]}], {"epochs": 8, "rung_epochs": 3}),
    "speech-commands-l4r5": ([{"name": "background_noise", "range": [5, 20]}, {"name": "gain_db", "range": [-12, 6]}],
                             {"epochs": 25, "rung_epochs": 5}),
    "har-nrf52840": ([{"name": "offset_drift", "range": [0.2, 1.0]}, {"name": "additive_noise", "range": [0.1, 0.5]},
                      {"name": "axis_misalignment", "range": [5, 20]}], {"epochs": 20, "rung_epochs": 4}),
}


def contract(name: str, field: list, search: dict, minutes: float, with_field: bool, tmp: Path):
    doc = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    doc["task"]["data"]["path"] = str((ROOT / "examples" / doc["task"]["data"]["path"]).resolve())
    doc["field"] = field
    doc["search"].update({**search, "time_budget_s": minutes * 60, "trials": 500, "augment": with_field})
    doc["budgets"].pop("field_accuracy", None)
    if with_field:
        doc["budgets"]["field_accuracy"] = {"min": 0.05, "over": "mean"}
    p = tmp / f"{name}-{'with' if with_field else 'without'}.yaml"
    p.write_text(yaml.safe_dump(doc))
    return load_contract(p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=4.0, help="search time per run")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    rows, raw = [], {}
    for name, (field, search) in CASES.items():
        if args.only and name not in args.only:
            continue
        results = {}
        for with_field in (False, True):
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d)
                try:
                    c = contract(name, field, search, args.minutes, with_field, tmp)
                except Exception as exc:
                    print(f"skip {name}: {exc}")
                    break
                run = Run.create(c, out=tmp / "run")
                run.search()
                rep = run.finalize(measure=False).model_dump(mode="json")  # the typed RunReport as a dict
                results[with_field] = rep
                raw[f"{name}/{'with' if with_field else 'without'}"] = {
                    k: rep.get(k) for k in ("test_accuracy_int8", "field_accuracy", "robustness", "counts", "best")}
        if len(results) < 2 or not all(r.get("best") for r in results.values()):
            continue
        base, robust = results[False], results[True]
        for label, rep in (("without conditions", base), ("with conditions", robust)):
            rows.append([name, label, str(sum(rep["counts"].values())), f"{rep['test_accuracy_int8']:.3f}",
                         f"{rep['field_accuracy']['mean']:.3f}", f"{rep['field_accuracy']['worst']:.3f}",
                         f"{rep['best']['predicted']['latency_ms']:.2f}"])
        gain = robust["field_accuracy"]["mean"] - base["field_accuracy"]["mean"]
        cost = base["test_accuracy_int8"] - robust["test_accuracy_int8"]
        rows.append([name, "**change**", "", f"{-cost:+.3f}", f"{gain:+.3f}",
                     f"{robust['field_accuracy']['worst'] - base['field_accuracy']['worst']:+.3f}", ""])
        print(rows[-3:], flush=True)
    body = table(["dataset", "run", "candidates", "clean int8 test acc", "field acc (mean)", "field acc (worst)",
                  "predicted latency ms"], rows)
    conds = "; ".join(f"{n}: " + ", ".join(f"{f['name']} {f['range']}" for f in fl) for n, (fl, _) in CASES.items())
    body += "\n\n" + " ".join([
        f"Same cost budgets, data, seed and {args.minutes:g} min of search per run.",
        "Field accuracy is measured on the int8 model (ONNX Runtime) on the test split under each condition",
        f"at the low, middle and high end of its range. Conditions: {conds}.",
        "'with' = conditions as training augmentation (rate 0.5) and a field-accuracy budget (mean), so the",
        "search optimises field accuracy; 'without' = clean training, clean objective.",
        "Goal: a clear field-accuracy gain for at most 1 point of clean accuracy.\n"])
    print(body)
    write_section("Robustness: with vs without declared field conditions (bench/robustness.py)", body)
    (ROOT / "bench" / "robustness.json").write_text(json.dumps(raw, indent=1, default=str))


if __name__ == "__main__":
    main()
