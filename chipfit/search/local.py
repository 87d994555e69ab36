"""``backend: local`` with ``workers: N``: N processes on one machine share the run's journal storage,
candidate record and claims (no Ray needed)."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from chipfit.logging import get_logger

log = get_logger(__name__)


def worker_main(run_dir: str, seconds_left: float | None, threads: int) -> None:
    """Entry point of an extra worker process: load the run and search until the shared slots are used."""
    from chipfit.data.sources import load_dataset
    from chipfit.run import Run
    from chipfit.search.loop import SearchLoop

    run = Run.load(run_dir)
    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    loop = SearchLoop(run.contract, load_dataset(run.contract), run.target, Path(run_dir), threads=threads)
    loop.run(deadline=deadline)


def start_workers(run_dir: Path, n: int, seconds_left: float | None, threads: int) -> list[mp.process.BaseProcess]:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=worker_main, args=(str(run_dir), seconds_left, threads), daemon=True,
                         name=f"chipfit-worker-{i + 1}") for i in range(n)]
    for p in procs:
        p.start()
    log.info("started %d extra worker processes", n)
    return procs


def join_workers(procs: list[mp.process.BaseProcess]) -> None:
    for p in procs:
        p.join()
        if p.exitcode not in (0, None):
            log.warning("worker %s exited with code %s; its unfinished candidate is redone on resume", p.name,
                        p.exitcode)
