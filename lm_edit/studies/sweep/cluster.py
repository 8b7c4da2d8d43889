"""Sweep workers as cluster jobs through submitit (the optional ``cluster`` extra):
``--slurm partition=gpu,timeout_min=720`` submits one Slurm job array, one task per
worker, each running :func:`.workers.run_worker`. submitit pickles the worker and its
arguments and runs them in the job; the cluster's nodes need this environment and the
sweep folder on a shared filesystem that supports file locks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lm_edit.studies.sweep.folder import inside
from lm_edit.studies.sweep.workers import Job, Start, WorkerSpec, run_worker

SUBMITIT_FOLDER = ".submitit"
"""Where submitit keeps job pickles and logs, inside the sweep folder (``folder=``
chooses another)."""

GENERIC = {
    "timeout_min",
    "mem_gb",
    "nodes",
    "cpus_per_task",
    "gpus_per_node",
    "tasks_per_node",
    "name",
    "stderr_to_stdout",
}
"""submitit's parameters shared by every cluster; any other key is a Slurm option
(``partition``, ``account``, ``qos``, ``constraint``...)."""


def require_submitit() -> Any:
    """The submitit module, or an error naming the extra to install."""
    try:
        import submitit
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "--slurm runs sweep workers through submitit, which is not installed: "
            "pip install 'lm-edit[cluster]'"
        ) from error
    return submitit


def _value(text: str) -> Any:
    """``"4"`` -> 4, ``"true"`` -> True, anything else as given."""
    if text.isdigit():
        return int(text)
    return {"true": True, "false": False}.get(text.lower(), text)


def executor_parameters(options: dict[str, str], device: str | None) -> dict[str, Any]:
    """submitit parameters from ``--slurm`` options: generic names as they are, Slurm
    options prefixed ``slurm_``; one task and, on ``cuda``, one GPU per job by default."""
    parameters: dict[str, Any] = {"tasks_per_node": 1, "nodes": 1}
    if device is None or device.startswith("cuda"):
        parameters["gpus_per_node"] = 1
    for key, text in options.items():
        name = key if key in GENERIC or key.startswith("slurm_") else f"slurm_{key}"
        parameters[name] = _value(text)
    return parameters


def submitit_start(options: dict[str, str], n_jobs: int) -> Start:
    """A ``start`` for :func:`.workers.run_workers` that submits ``n_jobs`` workers.
    ``cluster=local`` in ``options`` runs the same jobs as local processes (a trial of
    the submission on one machine); the default is ``slurm``."""
    submitit = require_submitit()
    options = dict(options)
    cluster = options.pop("cluster", "slurm")
    folder = options.pop("folder", None)

    @contextmanager
    def start(spec: WorkerSpec) -> Iterator[list[Job]]:
        root = spec.config.output_path
        logs = Path(folder) if folder else inside(root, root / SUBMITIT_FOLDER)
        executor = submitit.AutoExecutor(folder=logs / "%j", cluster=cluster)
        try:
            executor.update_parameters(**executor_parameters(options, spec.config.device))
        except NameError as error:
            raise ValueError(f"--slurm: {error}") from None
        jobs = executor.map_array(run_worker, [spec] * n_jobs)
        print(f"submitted {len(jobs)} job(s): {', '.join(job.job_id for job in jobs)}")
        print(f"job logs: {logs}")
        yield jobs

    return start
