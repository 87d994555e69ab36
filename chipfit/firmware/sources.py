"""The TFLM + CMSIS-NN source tree the firmware is built from: ``$CHIPFIT_TFLM_SRC``,
``../shared/third_party/tflm``, or, where neither has one (a user's machine with internet), fetched at the
pinned commits.

The tree is made the way ``../shared/third_party/tflm`` was made: TFLM's archive at the pinned commit, then
TFLM's own ``create_tflm_tree.py`` with the Cortex-M options (its Makefile downloads CMSIS-NN, CMSIS, the
Cortex DFP, flatbuffers, gemmlowp, ruy and kissfft at the commits TFLM pins, with TFLM's patches), then the
CMSIS core and device headers the timer source needs. The result lands in the firmware cache
(``<cache>/sources/tflm-<commit>``) with a ``chipfit-fetch.json`` saying what was fetched from where.

>>> fetched_tree().name.startswith("tflm-")
True
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from chipfit.firmware.toolchain import FirmwareError, cache_root

log = logging.getLogger(__name__)

TFLM_COMMIT = "90b983c2b"
# The commits of the self-contained tree (../shared/third_party/tflm), as TFLM pins them
PINNED = {
    "tflite-micro": f"https://github.com/tensorflow/tflite-micro at {TFLM_COMMIT}",
    "CMSIS-NN": "https://github.com/ARM-software/CMSIS-NN at 4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae",
    "CMSIS_6": "https://github.com/ARM-software/CMSIS_6 at 5782d6f8057906d360f4b95ec08a2354afe5c9b9",
    "Cortex_DFP": "https://github.com/ARM-software/Cortex_DFP at c2c70a97a20fb355815e2ead3d4a40e35a4a3cdf",
    "flatbuffers": "https://github.com/google/flatbuffers at v25.9.23 (with TFLM's flatbuffers.patch)",
    "gemmlowp": "https://github.com/google/gemmlowp at 719139ce755a0f31cbf1c37f7f98adcc7fc9f425",
    "ruy": "https://github.com/google/ruy at d37128311b445e758136b8602d1bbd2a755e115d",
    "kissfft": "https://github.com/mborgerding/kissfft at v130 (with TFLM's kissfft.patch)",
}

ARCHIVE = "https://github.com/tensorflow/tflite-micro/archive/{commit}.tar.gz"
MAKE_OPTIONS = "TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp OPTIMIZED_KERNEL_DIR=cmsis_nn"
CREATE_TREE = "tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py"
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
# What create_tflm_tree.py leaves out and the firmware's timer source needs: (from downloads/, to the tree)
EXTRA_HEADERS = (("cmsis/CMSIS/Core/Include", "third_party/cmsis/CMSIS/Core/Include"),
                 ("cortex_dfp/Device", "third_party/cortex_dfp/Device"))
# The programs TFLM's Makefile and download scripts call
NEEDS = ("make", "unzip", "patch")
RECORD = "chipfit-fetch.json"


def is_tflm_tree(path: Path) -> bool:
    """Whether ``path`` holds a TFLM tree with the CMSIS-NN kernels (as create_tflm_tree.py makes it)."""
    return (path / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file() and \
        (path / "third_party" / "cmsis_nn" / "Include").is_dir()


def _shared_candidates() -> list[Path]:
    return [Path(__file__).resolve().parents[3] / "shared" / "third_party" / "tflm",
            Path.cwd().parent / "shared" / "third_party" / "tflm"]


def tflm_source(*, fetch: bool | None = None) -> Path:
    """The TFLM + CMSIS-NN source tree: ``$CHIPFIT_TFLM_SRC`` when set (and only there); else
    ``../shared/third_party/tflm`` beside the repository (or the working directory); else a tree fetched
    earlier into the firmware cache; else, with ``fetch`` (default: unless ``$CHIPFIT_TFLM_FETCH`` is ``0``),
    one fetched now at the pinned commits (:func:`fetch_tflm_tree`, minutes). The error says where it looked,
    why the fetch failed, and where to get the sources by hand."""
    env = os.environ.get("CHIPFIT_TFLM_SRC")
    candidates = [Path(env)] if env else [*_shared_candidates(), fetched_tree()]
    for c in candidates:
        if is_tflm_tree(c):
            return c.resolve()
    if fetch is None:
        fetch = os.environ.get("CHIPFIT_TFLM_FETCH", "1") != "0"
    why = ""
    if fetch and not env:
        try:
            return fetch_tflm_tree()
        except FirmwareError as e:
            why = f" Fetching them failed: {str(e).rstrip('.')}."
    where = ", ".join(str(c) for c in candidates)
    pins = "; ".join(f"{k}: {v}" for k, v in PINNED.items())
    raise FirmwareError(
        f"TFLM + CMSIS-NN sources not found (looked in {where}; expected tensorflow/lite/micro/ and "
        f"third_party/cmsis_nn/ there).{why} Set CHIPFIT_TFLM_SRC to a tree made by TFLM's "
        f"tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py with "
        f"--makefile_options='{MAKE_OPTIONS}', from the pinned sources: {pins}.")


def fetched_tree(commit: str = TFLM_COMMIT) -> Path:
    """Where a fetched tree of ``commit`` lives (it may not exist yet)."""
    return cache_root() / "sources" / f"tflm-{commit}"


def _download(url: str, dest: Path, timeout_s: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout_s) as r, dest.open("wb") as f:
        shutil.copyfileobj(r, f)


def fetch_tflm_tree(dest: str | Path | None = None, *, commit: str = TFLM_COMMIT, archive_url: str | None = None,
                    timeout_s: float = 30.0, make_timeout_s: float = 3600.0) -> Path:
    """Fetch TFLM at ``commit`` and build its Cortex-M source tree in ``dest`` (default :func:`fetched_tree`).

    An existing tree there is kept. The tree is assembled in a temporary folder beside ``dest`` and moved in
    place only when complete, so an interrupted fetch leaves nothing half-made. Raises
    :class:`FirmwareError` saying which step failed (no network, a missing program, TFLM's script failing).
    """
    dest = Path(dest) if dest is not None else fetched_tree(commit)
    if is_tflm_tree(dest):
        return dest
    absent = [p for p in NEEDS if shutil.which(p) is None]
    if shutil.which("curl") is None and shutil.which("wget") is None:
        absent.append("curl or wget")
    if absent:
        raise FirmwareError(f"cannot fetch the TFLM sources: {', '.join(absent)} not found on PATH (TFLM's "
                            f"download scripts call them); install them, or set CHIPFIT_TFLM_SRC to a tree.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = (archive_url or ARCHIVE).format(commit=commit)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        work = Path(tmp)
        tgz = work / "tflite-micro.tar.gz"
        log.info("fetching TFLM %s from %s", commit, url)
        try:
            _download(url, tgz, timeout_s)
        except OSError as e:
            raise FirmwareError(f"cannot fetch the TFLM sources from {url}: {e}. Without internet, set "
                                f"CHIPFIT_TFLM_SRC to a copy of the tree (see `chipfit firmware-sources`)") from e
        with tarfile.open(tgz) as tf:
            tf.extractall(work / "src", filter="data")
        roots = [p for p in (work / "src").iterdir() if p.is_dir()]
        if len(roots) != 1 or not (roots[0] / CREATE_TREE).is_file():
            raise FirmwareError(f"{url} is not a tflite-micro archive (expected one folder holding {CREATE_TREE})")
        repo, tree = roots[0], work / "tree"
        cmd = [sys.executable, CREATE_TREE, f"--makefile_options={MAKE_OPTIONS}", str(tree)]
        log.info("running TFLM's create_tflm_tree.py (it downloads CMSIS-NN and the other pinned sources)")
        try:
            r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=make_timeout_s,
                               env={**os.environ, "PYTHONPATH": str(repo)})
        except subprocess.TimeoutExpired as e:
            raise FirmwareError(f"TFLM's create_tflm_tree.py took over {make_timeout_s:.0f} s") from e
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-15:]
            raise FirmwareError(f"TFLM's create_tflm_tree.py failed (exit {r.returncode}):\n" + "\n".join(tail))
        for src, to in EXTRA_HEADERS:
            if (repo / DOWNLOADS / src).is_dir() and not (tree / to).is_dir():
                shutil.copytree(repo / DOWNLOADS / src, tree / to)
        if not is_tflm_tree(tree):
            raise FirmwareError(f"TFLM's create_tflm_tree.py ran but its tree lacks tensorflow/lite/micro/ or "
                                f"third_party/cmsis_nn/Include (TFLM {commit}, options {MAKE_OPTIONS})")
        (tree / RECORD).write_text(json.dumps({
            "tflite_micro": commit, "archive": url, "make_options": MAKE_OPTIONS,
            "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - t0, 1)}, indent=1))
        if is_tflm_tree(dest):  # another process finished first
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        tree.rename(dest)
    log.info("TFLM sources ready in %s (%.0f s)", dest, time.monotonic() - t0)
    return dest
