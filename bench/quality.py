"""Best feasible model vs the reference architecture, trained by the same pipeline on the same data and target.

For fsdd, the Speech Commands subset, the CIFAR subset, HAR and CWRU (the example contracts, whose latency
budget is half the reference's predicted latency): int8 test accuracy, predicted latency, RAM and flash of
chipfit's best feasible model and of the reference. Goal: at least the reference's accuracy at half its
predicted latency. Run: ``python bench/quality.py [--minutes 6] [--only cifar-h743]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as `python bench/<name>.py`: put the repository root first on sys.path, not bench/ (whose profile.py
# would shadow the standard library's profile module)
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from bench._report import table, write_section
from chipfit import load_contract
from chipfit.run import Run

ROOT = Path(__file__).resolve().parents[1]
CASES = [("fsdd-nrf52840", "dscnn-kws"), ("speech-commands-l4r5", "dscnn-kws"), ("cifar-h743", "resnet8"),
         ("har-nrf52840", "cnn1d-har"), ("cwru-f746", "cnn1d-har")]


def contract_for(name: str, minutes: float, tmp: Path, threads: int):
    doc = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    doc["search"].update({"time_budget_s": minutes * 60, "trials": 200, "threads": threads})
    p = tmp / f"{name}.yaml"
    doc["task"]["data"]["path"] = str((ROOT / "examples" / doc["task"]["data"]["path"]).resolve())
    p.write_text(yaml.safe_dump(doc))
    return load_contract(p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=6.0, help="search time budget per dataset")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    store = ROOT / "bench" / "quality.json"
    raw = json.loads(store.read_text()) if store.exists() else {}  # earlier datasets are kept (--only reruns one)
    for name, ref in CASES:
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            try:
                c = contract_for(name, args.minutes, tmp, args.threads)
            except Exception as exc:  # e.g. ../shared/data absent
                print(f"skip {name}: {exc}")
                continue
            t0 = time.monotonic()
            run = Run.create(c, out=tmp / "run")
            run.search()
            report = run.finalize()
            search_s = time.monotonic() - t0
            refrep = run.evaluate_reference(ref)
            rec = refrep["record"]
            best = report.get("best") or {}
            bp = best.get("predicted", {})
            rp = rec["predicted"]
            ok = (best and report["test_accuracy_int8"] >= refrep.get("test_accuracy_int8", 1)
                  and bp["latency_ms"] <= 0.5 * rp["latency_ms"])
            row = [
                name, c.get_target().name, f"{sum(report['counts'].values())} ({report['counts']['COMPLETE']} trained)",
                f"{report['test_accuracy_int8']:.3f}" if best else "-", f"{bp.get('latency_ms', float('nan')):.2f}",
                f"{bp.get('ram_bytes', 0) / 1024:.1f}", f"{bp.get('flash_bytes', 0) / 1024:.1f}",
                ref, f"{refrep.get('test_accuracy_int8', float('nan')):.3f}", f"{rp['latency_ms']:.2f}",
                f"{rp['ram_bytes'] / 1024:.1f}", f"{rp['flash_bytes'] / 1024:.1f}",
                f"{bp.get('latency_ms', float('nan')) / rp['latency_ms']:.2f}", "yes" if ok else "no",
                report["verdict"], f"{args.minutes:g}"]
            raw[name] = {"report": {k: report[k] for k in ("verdict", "counts", "test_accuracy_int8", "best")},
                         "reference": refrep, "search_seconds": search_s, "row": row}
            print(row, flush=True)
    rows = [raw[n]["row"] for n, _ in CASES if n in raw and "row" in raw[n]]
    body = table(["contract", "target", "candidates", "best int8 test acc", "best latency ms", "RAM kB", "flash kB",
                  "reference", "ref int8 test acc", "ref latency ms", "ref RAM kB", "ref flash kB",
                  "latency ratio", "goal met", "verdict", "search minutes"], rows)
    body += (f"\n\nSearch time budget per dataset as listed, {args.threads} training threads; the reference "
             "is trained by the same pipeline (same preprocessing, epochs, early stopping, int8 PTQ) regardless of "
             "its cost. Accuracies are measured on the int8 ONNX model with ONNX Runtime on each dataset's test "
             "split; latency, RAM and flash are predicted by the analytical cost model for the contract's target. "
             "Goal: at least the reference's accuracy at half its predicted latency (each contract's latency "
             "budget is half the reference's).\n")
    print(body)
    write_section("Quality vs reference architectures (bench/quality.py)", body)
    store.write_text(json.dumps(raw, indent=1, default=str))


if __name__ == "__main__":
    main()
