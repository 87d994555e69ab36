"""Build probe networks in worker processes: exporting to ONNX and quantizing take most of a calibration's
build time and need no quiet machine, so they use every CPU before the probes are measured one at a time.

>>> map_in_processes(pow, [(2, 3), (3, 2)], jobs=1)
[8, 9]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

MAX_JOBS = 8
MIN_PER_JOB = 16  # fewer items than this per worker: starting a process (importing torch) costs more than it saves


def default_jobs() -> int:
    """One per CPU this process may run on, at most :data:`MAX_JOBS`."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_JOBS))


def effective_jobs(n_items: int, jobs: int | None = None) -> int:
    """How many worker processes :func:`map_in_processes` starts for ``n_items`` (1: it runs them here).

    >>> effective_jobs(10, 4), effective_jobs(100, 4), effective_jobs(100, 1)
    (1, 4, 1)
    """
    return max(1, min(jobs or default_jobs(), n_items // MIN_PER_JOB))


def map_in_processes(fn: Callable[..., T], items: Sequence[tuple[Any, ...]], *, jobs: int | None = None) -> list[T]:
    """``[fn(*item) for item in items]``, in order, computed by :func:`effective_jobs` worker processes (up to
    ``jobs``, default :func:`default_jobs`), torch in each on one thread. Runs here when one job would do, or
    when there are too few items to pay for starting the workers. The workers are joblib's (loky): they do not
    run the caller's script again, so a script without ``if __name__ == "__main__":`` works."""
    n = effective_jobs(len(items), jobs)
    if n <= 1:
        return [fn(*item) for item in items]
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(backend="loky", n_jobs=n, inner_max_num_threads=1):
        return list(Parallel(batch_size="auto")(delayed(fn)(*item) for item in items))
