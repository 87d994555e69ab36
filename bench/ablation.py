"""What each search improvement adds: the full search, and the full search less one improvement at a time.

On two datasets (spoken digits on the nRF52840, HAR on the nRF52840) and several seeds, each variant searches
the example contract for the same wall time; the table gives the mean int8 test accuracy of the selected model
(every draw beside it), how many candidates were trained, and the difference to the full search. A variant
whose search finds no model holding the budgets counts its best model anyway (the report's closest) and is
marked. bench/recipes.py ablates the training recipes on fixed architectures at a fixed epoch budget; this
one measures them inside the search, where they compete with the time they cost.

    .venv/bin/python bench/ablation.py [--minutes 2] [--seeds 0 1] [--parallel 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import statistics

from bench._jobs import run_jobs
from bench._report import commit, table, write_section

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["fsdd-nrf52840", "har-nrf52840"]
RECIPES_OFF = {"one_cycle": False, "label_smoothing": 0.0, "mixup": "off", "specaugment": "off", "balance": "off"}
VARIANTS: dict[str, dict] = {
    "full search (defaults)": {},
    "- warm start": {"warm_start": False},
    "- successive halving (one rung, median pruning)": {"fidelity": "median"},
    "- training recipes (one-cycle, label smoothing, mixup, class balance)": {"recipe": RECIPES_OFF},
    "+ distillation (off by default)": {"recipe": {"distill": True}},
    "none of them (no warm start, one rung, no recipes, no QAT)": {
        "warm_start": False, "fidelity": "median", "recipe": {**RECIPES_OFF, "qat": False}},
}
NOTE = ("SpecAugment and distillation are off by default: at a fixed 15-epoch budget bench/recipes.py measured "
        "them lowering int8 accuracy. QAT fine-tuning (on by default) runs only when a candidate's int8 accuracy "
        "falls more than a point below its float accuracy; the column 'QAT runs' counts how often it ran.")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=1.5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--variants", nargs="*", default=None, help="names (prefixes) of VARIANTS to run")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    variants = {k: v for k, v in VARIANTS.items() if not args.variants or any(k.startswith(p) for p in args.variants)}
    jobs = [{"contract": d, "reference": None, "seed": s, "minutes": args.minutes, "threads": 1, "overrides": o,
             "variant": name} for d in DATASETS for name, o in variants.items() for s in args.seeds]
    results = run_jobs(jobs, args.parallel)
    (ROOT / "bench" / "ablation.json").write_text(json.dumps({"commit": commit(), "results": results}, indent=1,
                                                             default=str))
    rows = []
    for d in DATASETS:
        full = [r["test_accuracy_int8"] for r in results if r["contract"] == d and r["variant"] == next(iter(
            variants)) and r.get("test_accuracy_int8") is not None]
        for name in variants:
            rs = [r for r in results if r["contract"] == d and r["variant"] == name]
            accs = [r["test_accuracy_int8"] for r in rs if r.get("test_accuracy_int8") is not None]
            errs = [r for r in rs if "error" in r]
            fails = sum(1 for r in rs if r.get("verdict") == "FAIL")
            mean = statistics.fmean(accs) if accs else None
            rows.append([d, name, "-" if mean is None else f"{mean:.3f}", ", ".join(f"{a:.3f}" for a in accs),
                         "-" if mean is None or not full else f"{mean - statistics.fmean(full):+.3f}",
                         "/".join(str(r.get("counts", {}).get("COMPLETE", "-")) for r in rs),
                         "/".join(f"{r.get('qat_runs', '-')} ({r.get('qat_kept', '-')} kept)" for r in rs),
                         f"{fails} of {len(rs)}" + (f"; {len(errs)} errors: {errs[0]['error']}" if errs else "")])
    body = table(["dataset", "variant", "mean int8 test acc", "each seed", "vs full search",
                  "candidates trained per seed", "QAT runs per seed", "runs with verdict FAIL"], rows)
    body += (f"\n\nSeeds {', '.join(map(str, args.seeds))}; {args.minutes:g} min of search per run, 1 training thread, "
             f"{args.parallel} runs side by side. Test accuracy of the selected model's int8 ONNX model (ONNX Runtime) "
             "on the test split, which no search decision saw. Differences of a point or two are within the spread "
             "between seeds shown beside them. " + NOTE + "\n")
    print(body)
    if not args.no_write:
        write_section("Ablation: what each search improvement adds (bench/ablation.py)", body)


if __name__ == "__main__":
    main()
