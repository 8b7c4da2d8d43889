"""One sweep split over several worker processes: on this machine (``--workers N``) or
as cluster jobs (``--slurm``, see :mod:`.cluster`).

Every worker runs :func:`run_worker`, that is :func:`.runner.run_sweep` on the same
arguments: it takes the editors no other worker holds (:mod:`.claims`) and records their
checkpoints in the one manifest. The coordinator first opens the folder itself (so a
folder of another sweep is refused once, before any job starts, and ``--overwrite`` runs
alone), then starts the workers and waits for them.

Local workers are plain ``spawn`` processes of the standard library, each pinned to one
GPU (``CUDA_VISIBLE_DEVICES``) when the sweep runs on ``cuda`` and GPUs are visible.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from typing import Any, Protocol

from lm_edit.studies.sweep.identity import plain
from lm_edit.studies.sweep.lock import sweep_folder_lock
from lm_edit.studies.sweep.manifest import UNEDITED, SweepState, checkpoint_key
from lm_edit.studies.sweep.runner import (
    Evaluate,
    LoadModel,
    SweepConfig,
    evaluate_live,
    open_state,
    run_sweep,
)

logger = logging.getLogger(__name__)

Events = list[tuple[str, int, str]]


class Job(Protocol):
    """A started worker: a ``concurrent.futures`` future or a submitit job."""

    def result(self) -> Events: ...


@dataclass
class WorkerSpec:
    """What every worker of one sweep runs (pickled to each worker)."""

    config: SweepConfig
    evaluate: Evaluate = evaluate_live
    load: LoadModel | None = None
    task_manager: Any = None
    wandb_args: dict[str, Any] = field(default_factory=dict)
    wandb_config_args: dict[str, Any] = field(default_factory=dict)


def run_worker(spec: WorkerSpec, gpu: str | None = None) -> Events:
    """One worker: pin ``gpu`` (before anything touches CUDA), then run the sweep."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if not logging.getLogger().handlers:
        fmt = f"%(levelname)s [worker {os.getpid()}] %(name)s: %(message)s"
        logging.basicConfig(level=logging.INFO, format=fmt)
    wandb = None
    if spec.wandb_args:
        from lm_edit.studies.sweep.loggers import WandbSweepLogger

        wandb = WandbSweepLogger(spec.wandb_args, spec.wandb_config_args)
    try:
        _, events = run_sweep(
            spec.config,
            spec.task_manager,
            evaluate=spec.evaluate,
            log_results=wandb,
            load=spec.load,
        )
        return events
    finally:
        if wandb is not None:
            wandb.close()


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_slots(device: str | None, n: int) -> list[str | None]:
    """Per worker the GPU to pin: round robin over the visible GPUs when ``device`` is
    ``cuda`` (or left to the model), none for ``cpu`` or a GPU named by index."""
    gpus = visible_gpus() if device in (None, "cuda") else []
    return [gpus[i % len(gpus)] if gpus else None for i in range(n)]


@contextmanager
def local_workers(spec: WorkerSpec, n: int) -> Iterator[list[Job]]:
    """Start ``n`` worker processes (one process each, never reused) for the block; a
    worker whose run ends exits then, handing back its memory while the others work on."""
    with ExitStack() as stack:
        jobs: list[Job] = []
        for gpu in gpu_slots(spec.config.device, n):
            pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            job = pool.submit(run_worker, spec, gpu)
            job.add_done_callback(lambda _, pool=pool: pool.shutdown(wait=False))
            jobs.append(job)
        yield jobs


Start = Callable[[WorkerSpec], Any]
"""Starts the workers of a spec: a context manager yielding its jobs."""


@dataclass
class WorkersOutcome:
    """What the workers did: their events, and one line per worker that failed."""

    events: Events
    failures: list[str]


def run_workers(config: SweepConfig, start: Start, **spec: Any) -> WorkersOutcome:
    """Open the sweep's folder here, run its workers through ``start`` and wait for all
    of them; ``spec`` fills the rest of :class:`WorkerSpec`."""
    with sweep_folder_lock(config.output_path, shared=not config.overwrite):
        open_state(config)
    worker_spec = WorkerSpec(replace(config, overwrite=False), **spec)
    outcome = WorkersOutcome([], [])
    with start(worker_spec) as jobs:
        logger.info("Started %d worker(s) on %s", len(jobs), config.output_path)
        for index, job in enumerate(jobs):
            try:
                outcome.events += job.result()
            except Exception as error:  # a worker's failure is reported, not raised
                line = f"worker {index}: {type(error).__name__}: {error}"
                logger.error("Sweep %s", line)
                outcome.failures.append(line)
    return outcome


def unfinished(config: SweepConfig) -> Sequence[str]:
    """The checkpoints of the sweep its manifest does not list as finished."""
    state = SweepState(config.output_path, plain(config.fingerprinted()))
    state.refresh()
    wanted = [(UNEDITED, 0)] + [(e, k) for e in config.run_names for k in config.checkpoints]
    return [checkpoint_key(e, k) for e, k in wanted if not state.is_done(e, k)]
