"""``backend: ray``: the same Optuna study, with candidate trainings run as Ray tasks across a cluster.

The driver (where ``chipfit run`` runs) samples, costs and claims candidates — infeasible ones are settled
there and never shipped — and keeps up to ``workers`` trainings in flight as Ray tasks, each declaring its
CPUs and memory. A task trains in a temporary folder on its node and returns the record and the artifact
files; only the driver writes the run directory and the journal storage, so nothing is recorded twice. A
task whose worker dies is retried by Ray (``max_retries``); if it keeps failing, the candidate is recorded
``FAILED`` with the reason and the run goes on.

On a real cluster every node needs chipfit installed and the contract's data path readable (a shared file
system, or the same path on every node); the run directory lives on the driver only.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chipfit.errors import ChipfitError
from chipfit.logging import get_logger

if TYPE_CHECKING:
    from chipfit.run import Run

log = get_logger(__name__)
TASK_MEMORY_BYTES = 1536 * 2**20  # declared per training task (torch + data + ONNX Runtime; STACK-NOTES: ~1.2 GB)
_DATA_CACHE: dict[str, Any] = {}


def train_task(contract_yaml: str, base: dict[str, Any], config: dict[str, Any], seconds_left: float | None,
               threads: int, peers: list[float]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Runs on a Ray worker: train one assessed candidate; return its record and artifact bytes."""
    from chipfit.contract import load_contract
    from chipfit.data.sources import load_dataset
    from chipfit.search.loop import SearchLoop
    from chipfit.space import ArchConfig

    tmp = Path(tempfile.mkdtemp(prefix="chipfit-task-"))
    try:
        (tmp / "contract.yaml").write_text(contract_yaml)
        contract = load_contract(tmp / "contract.yaml")
        key = hashlib.sha256(contract_yaml.encode()).hexdigest()
        if key not in _DATA_CACHE:  # a worker process keeps its dataset between tasks
            _DATA_CACHE.clear()
            _DATA_CACHE[key] = load_dataset(contract)
        loop = SearchLoop(contract, _DATA_CACHE[key], contract.get_target(), tmp, threads=threads)
        deadline = None if seconds_left is None else time.monotonic() + seconds_left
        rec = loop.train(base, ArchConfig.from_dict(config), deadline=deadline, peers=peers)
        files = {rel: (tmp / rel).read_bytes() for rel in rec.artifacts.values()}
        return rec.to_dict(), files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_ray(run: Run, loop: Any, *, address: str | None, workers: int, deadline: float | None) -> None:
    """Drive the search with up to ``workers`` Ray training tasks in flight."""
    try:
        import ray
    except ImportError as exc:
        raise ChipfitError("search.backend is 'ray' but Ray is not installed: pip install 'chipfit[ray]'") from exc
    from chipfit.search.claims import Claims
    from chipfit.search.loop import open_study
    from chipfit.store import CandidateRecord

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 **({} if address else {"num_cpus": max(workers * loop.s.threads, 1)}))
    try:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        node_cpus = max((int(n["Resources"].get("CPU", 0)) for n in alive), default=1)
        threads = max(1, min(loop.s.threads, node_cpus))
        if threads < loop.s.threads:
            log.warning("search.threads=%d exceeds the largest node's %d CPUs; tasks use %d", loop.s.threads,
                        node_cpus, threads)
        if workers <= 1:  # default: as many trainings in flight as the cluster's CPUs allow
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        log.info("Ray: %d nodes, %d trainings in flight, %d CPUs each", len(alive), workers, threads)
        remote = ray.remote(train_task).options(num_cpus=threads, memory=TASK_MEMORY_BYTES, max_retries=2,
                                                retry_exceptions=False)
        contract_yaml = (run.dir / "contract.yaml").read_text()
        study = open_study(run.dir, loop.s.seed, loop.s.trials)
        claims = Claims(run.dir)
        loop.cb.on_start(loop.s.trials, len(loop.store.load()))
        budget = [5 * loop.s.trials]
        inflight: dict[Any, tuple[Any, dict[str, Any], float]] = {}
        exhausted = False
        while True:
            while not exhausted and len(inflight) < workers:
                nxt = loop.next_candidate(study, claims, deadline, budget)
                if nxt is None:
                    exhausted = True
                    break
                trial, config = nxt
                base, done = loop.assess(config, trial.number)
                if done is not None:
                    loop.record(study, trial, done)
                    continue
                left = None if deadline is None else max(deadline - time.monotonic(), 1.0)
                peers = [r.rung_accuracy for r in loop.store.load() if r.rung_accuracy is not None]
                ref = remote.remote(contract_yaml, base, config.to_dict(), left, threads, peers)
                inflight[ref] = (trial, base, time.monotonic())
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                trial, base, t0 = inflight.pop(ref)
                try:
                    rec_dict, files = ray.get(ref)
                    for rel, blob in files.items():
                        path = run.dir / rel
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(blob)
                    rec = CandidateRecord.from_dict(rec_dict)
                except Exception as exc:  # the worker died (after Ray's retries) or the task raised
                    log.warning("Ray task for candidate %d failed: %s", base["id"], exc)
                    rec = CandidateRecord(**base, state="FAILED", reason=f"Ray task failed: {type(exc).__name__}: "
                                          f"{str(exc).splitlines()[0][:300]}", wall_seconds=time.monotonic() - t0)
                loop.record(study, trial, rec)
    finally:
        if started_here:
            ray.shutdown()
