"""Where candidate trainings run, behind one small interface; the search loop drives every backend alike.

The loop (:meth:`chipfit.search.loop.SearchLoop.run`) samples, costs and claims candidates — infeasible ones
are settled there and never shipped — then ``submit``\\ s each training as a :class:`TrainJob` and
``wait``\\ s for finished ones, keeping up to ``slots`` in flight. Only the loop writes the record and the study.

- ``InProcessBackend``: trains in this process, one at a time (the default).
- ``ProcessPoolBackend``: ``workers`` processes on this machine (``search.workers: N``); each loads the run's
  contract and data once and writes the candidate's files straight into the run directory.
- ``RayBackend``: Ray tasks on a cluster (``search.backend: ray``); a task trains in a temporary folder on its
  node and returns the record and the files. A task whose worker dies is retried by Ray; if it keeps failing,
  the candidate is recorded ``FAILED`` (``failure_kind: environment``) and the run goes on.

>>> sorted(BACKENDS)
['local', 'ray']
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chipfit.errors import ChipfitError
from chipfit.logging import get_logger
from chipfit.store import CandidateRecord

if TYPE_CHECKING:
    from chipfit.search.training import CandidateTrainer

log = get_logger(__name__)
TASK_MEMORY_BYTES = 1536 * 2**20  # declared per Ray training task (torch + data + ONNX Runtime, ~1.2 GB measured)


@dataclass(frozen=True)
class TrainJob:
    """One assessed candidate to train: the record's common fields (``base``), its config, the validation
    accuracies of earlier candidates at each rung (epochs -> accuracies, for pruning) and the seconds left in
    the time budget."""

    number: int
    base: dict[str, Any]
    config: dict[str, Any]
    peers: dict[int, tuple[float, ...]]
    seconds_left: float | None

    def deadline(self) -> float | None:
        return None if self.seconds_left is None else time.monotonic() + self.seconds_left


def _failed(job: TrainJob, why: str, t0: float) -> CandidateRecord:
    """A training whose worker died (killed, out of memory): the environment failed, not the candidate, so a
    resume retries it."""
    return CandidateRecord(**job.base, state="FAILED", reason=why, wall_seconds=time.monotonic() - t0,
                           failure_kind="environment")


class Backend(ABC):
    """Runs trainings for one search loop."""

    slots: int = 1  # trainings kept in flight

    def start(self, loop: CandidateTrainer) -> None:  # noqa: B027 - optional hook
        """Called once before the first job."""

    @abstractmethod
    def submit(self, job: TrainJob) -> None:
        """Start (or queue) ``job``."""

    @abstractmethod
    def wait(self) -> list[tuple[TrainJob, CandidateRecord]]:
        """Block until at least one submitted job has finished; return the finished ones."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers (also on error)."""


class InProcessBackend(Backend):
    """Trains here, one candidate at a time."""

    def __init__(self) -> None:
        self._queue: deque[TrainJob] = deque()
        self._loop: CandidateTrainer | None = None

    def start(self, loop: CandidateTrainer) -> None:
        self._loop = loop

    def submit(self, job: TrainJob) -> None:
        self._queue.append(job)

    def wait(self) -> list[tuple[TrainJob, CandidateRecord]]:
        assert self._loop is not None, "start() first"
        job = self._queue.popleft()
        rec = self._loop.train(job.base, _config(job), deadline=job.deadline(), peers=dict(job.peers))
        return [(job, rec)]


def _config(job: TrainJob) -> Any:
    from chipfit.space import ArchConfig

    return ArchConfig.from_dict(job.config)


# -- local worker processes ------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _worker_init(run_dir: str, threads: int) -> None:
    """In each worker process: load the run's contract and data once."""
    from chipfit.contract import load_contract
    from chipfit.data.sources import load_dataset
    from chipfit.search.training import CandidateTrainer

    contract = load_contract(Path(run_dir) / "contract.yaml")
    _WORKER["loop"] = CandidateTrainer(contract, load_dataset(contract), contract.get_target(), Path(run_dir),
                                 threads=threads)


def _worker_train(job: TrainJob) -> dict[str, Any]:
    loop = _WORKER["loop"]
    return loop.train(job.base, _config(job), deadline=job.deadline(), peers=dict(job.peers)).to_dict()


class ProcessPoolBackend(Backend):
    """``workers`` processes on this machine; each trains one candidate at a time with ``threads`` threads."""

    def __init__(self, workers: int, threads: int) -> None:
        self.slots = workers
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[Future[dict[str, Any]], tuple[TrainJob, float]] = {}

    def start(self, loop: CandidateTrainer) -> None:
        import multiprocessing as mp

        self._pool = ProcessPoolExecutor(self.slots, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                         initargs=(str(loop.run_dir), self.threads))
        log.info("training in %d worker processes, %d threads each", self.slots, self.threads)

    def submit(self, job: TrainJob) -> None:
        assert self._pool is not None, "start() first"
        self._futures[self._pool.submit(_worker_train, job)] = (job, time.monotonic())

    def wait(self) -> list[tuple[TrainJob, CandidateRecord]]:
        done, _ = wait(list(self._futures), return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            job, t0 = self._futures.pop(fut)
            try:
                rec = CandidateRecord.from_dict(fut.result())
            except ChipfitError:
                raise
            except Exception as exc:  # the worker process died (killed, out of memory)
                log.warning("worker training candidate %d failed: %s", job.number, exc)
                rec = _failed(job, f"worker process failed: {type(exc).__name__}: {exc}", t0)
            out.append((job, rec))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# -- Ray ------------------------------------------------------------------------------------------------
_DATA_CACHE: dict[str, Any] = {}


def ray_train_task(contract_yaml: str, job: TrainJob, threads: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Runs on a Ray worker: train one assessed candidate in a temporary folder; return its record and files."""
    from chipfit.contract import load_contract
    from chipfit.data.sources import load_dataset
    from chipfit.search.training import CandidateTrainer

    tmp = Path(tempfile.mkdtemp(prefix="chipfit-task-"))
    try:
        (tmp / "contract.yaml").write_text(contract_yaml)
        contract = load_contract(tmp / "contract.yaml")
        key = hashlib.sha256(contract_yaml.encode()).hexdigest()
        if key not in _DATA_CACHE:  # a worker process keeps its dataset between tasks
            _DATA_CACHE.clear()
            _DATA_CACHE[key] = load_dataset(contract)
        loop = CandidateTrainer(contract, _DATA_CACHE[key], contract.get_target(), tmp, threads=threads)
        rec = loop.train(job.base, _config(job), deadline=job.deadline(), peers=dict(job.peers))
        files = {rel: (tmp / rel).read_bytes() for rel in rec.artifacts.values()}
        return rec.to_dict(), files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayBackend(Backend):
    """Ray tasks on a cluster (``address``), or on a local Ray started here. On a real cluster every node needs
    chipfit installed and the contract's data path readable; the run directory lives on the driver only."""

    def __init__(self, *, address: str | None, workers: int, threads: int) -> None:
        self.address, self.workers, self.threads = address, workers, threads
        self._inflight: dict[Any, tuple[TrainJob, float]] = {}
        self._started_here = False
        self._run_dir: Path | None = None

    def start(self, loop: CandidateTrainer) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ChipfitError("search.backend is 'ray' but Ray is not installed: pip install 'chipfit[ray]'") from exc
        self._run_dir = loop.run_dir
        self._started_here = not ray.is_initialized()
        if self._started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     **({} if self.address else {"num_cpus": max(self.workers * self.threads, 1)}))
        alive = [n for n in ray.nodes() if n.get("Alive")]
        node_cpus = max((int(n["Resources"].get("CPU", 0)) for n in alive), default=1)
        threads = max(1, min(self.threads, node_cpus))
        if threads < self.threads:
            log.warning("search.threads=%d exceeds the largest node's %d CPUs; tasks use %d", self.threads,
                        node_cpus, threads)
        self.threads = threads
        self.slots = self.workers if self.workers > 1 else max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        log.info("Ray: %d nodes, %d trainings in flight, %d CPUs each", len(alive), self.slots, threads)
        self._remote = ray.remote(ray_train_task).options(num_cpus=threads, memory=TASK_MEMORY_BYTES, max_retries=2,
                                                          retry_exceptions=False)
        self._contract_yaml = (loop.run_dir / "contract.yaml").read_text()

    def submit(self, job: TrainJob) -> None:
        ref = self._remote.remote(self._contract_yaml, job, self.threads)
        self._inflight[ref] = (job, time.monotonic())

    def wait(self) -> list[tuple[TrainJob, CandidateRecord]]:
        import ray

        assert self._run_dir is not None
        ready, _ = ray.wait(list(self._inflight), num_returns=1)
        out = []
        for ref in ready:
            job, t0 = self._inflight.pop(ref)
            try:
                rec_dict, files = ray.get(ref)
                for rel, blob in files.items():
                    path = self._run_dir / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(blob)
                rec = CandidateRecord.from_dict(rec_dict)
            except Exception as exc:  # the worker died (after Ray's retries) or the task raised
                log.warning("Ray task for candidate %d failed: %s", job.number, exc)
                rec = _failed(job, f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}", t0)
            out.append((job, rec))
        return out

    def close(self) -> None:
        if self._started_here:
            import ray

            ray.shutdown()
            self._started_here = False


BACKENDS = {"local": "in this process, or N local worker processes with search.workers: N",
            "ray": "Ray tasks on a cluster (search.address) or a local Ray"}


def create_backend(name: str, *, workers: int, threads: int, address: str | None = None) -> Backend:
    """The backend for ``search.backend`` (``local`` or ``ray``) and ``search.workers``."""
    if name == "ray":
        return RayBackend(address=address, workers=workers, threads=threads)
    if name != "local":
        from chipfit.errors import UsageError
        from chipfit.naming import did_you_mean

        raise UsageError(f"unknown search backend '{name}': expected local or ray.{did_you_mean(name, BACKENDS)}")
    if workers > 1:
        return ProcessPoolBackend(workers, max(1, threads // workers))
    return InProcessBackend()
