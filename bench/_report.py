"""Write a benchmark's table into BENCHMARKS.md under its own heading, with the machine and date."""

from __future__ import annotations

import datetime as dt
import platform
import re
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {psutil.cpu_count()} logical CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
            f"Python {platform.python_version()}")


def commit() -> str:
    """The commit the figures come from (``+ uncommitted changes`` when the tree differs, BENCHMARKS.md aside)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    # the benches' own outputs (BENCHMARKS.md, bench/*.json) are not code: they do not make the tree dirty
    dirty = git("status", "--porcelain", "--", ".", ":(exclude)BENCHMARKS.md", ":(exclude)bench/*.json")
    return f"{head} + uncommitted changes" if dirty else head


def write_section(title: str, body: str, *, measured_at: str | None = None) -> None:
    """Replace (or append) the ``## title`` section of BENCHMARKS.md (under a lock: benches run side by side).
    ``measured_at``: the commit the figures were measured at, when the table is re-rendered from saved results
    (the stamp then names both)."""
    import fcntl

    path = ROOT / "BENCHMARKS.md"
    made = commit() if measured_at is None else \
        f"{measured_at} (table re-rendered from its saved results at {commit()})"
    stamp = f"Machine: {machine()}. Date: {dt.date.today().isoformat()}. Commit: {made}.\n\n"
    section = f"## {title}\n\n{stamp}{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    with open(ROOT / ".benchmarks.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured by the scripts in `bench/`.\n"
        text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
        path.write_text(text.rstrip() + "\n")


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
