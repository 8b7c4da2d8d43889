"""A stand-in model and evaluation for sweeps run by worker processes: importable by
name, so spawned processes and submitit jobs can unpickle them.

``STAND_IN_LOG`` names a file every evaluation appends ``<pid> <editor>/<n_edits>`` to;
``STAND_IN_BARRIER=<n>`` makes each model load wait until ``n`` processes have loaded
one (so work is really split); ``STAND_IN_DIE_AT=<editor>/<n>`` kills the process
evaluating that checkpoint, as a crash or ``kill -9`` would; ``STAND_IN_OUTLIVE=<editor>/<n>``
makes the process evaluating that checkpoint wait until it is the only worker process
alive, then log ``<pid> alone``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

EDITOR_DAMAGE = {"rome": 0.02, "memit": 0.01, "ft-l": 0.05}


class StandInLM:
    """What the sweep loop reads from an ``edited-hf`` model, without a model."""

    def __init__(self, editor: str) -> None:
        self.editor = editor
        self.n_applied = 0
        self.model = None
        self.tokenizer = None
        self.edit_stream = SimpleNamespace(records=[])
        self.edit_session = SimpleNamespace(
            requests=[], config={"editor": editor}, manifest=lambda: {"editor": editor}
        )

    def edit_up_to(self, count: int) -> None:
        self.n_applied = count


class StandInTasks:
    """A task manager whose tasks always load."""

    def load(self, names: list[str]) -> None:
        pass


def _wait_for_peers(log: Path, n: int) -> None:
    started = log.with_name(f"{log.name}.started")
    with started.open("a") as handle:
        handle.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(set(started.read_text().split())) >= n:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{n} worker processes did not all start within 120 s")


def load(config: Any, editor: str) -> StandInLM:
    """A stand-in model (waiting for peers under ``STAND_IN_BARRIER``)."""
    barrier = int(os.environ.get("STAND_IN_BARRIER", "0"))
    if barrier:
        _wait_for_peers(Path(os.environ["STAND_IN_LOG"]), barrier)
    return StandInLM(editor)


def _live_peers() -> list[int]:
    """The other worker processes of this process's parent that have not exited."""
    import psutil

    live = []
    for child in psutil.Process(os.getppid()).children():
        try:
            worker = "spawn_main" in " ".join(child.cmdline())
            if worker and child.pid != os.getpid() and child.status() != psutil.STATUS_ZOMBIE:
                live.append(child.pid)
        except psutil.Error:  # exited meanwhile
            continue
    return live


def _wait_to_be_alone(log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _live_peers():
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker processes {_live_peers()} still alive after {timeout} s")
        time.sleep(0.1)
    with log.open("a") as handle:
        handle.write(f"{os.getpid()} alone\n")


def evaluate(lm: StandInLM, config: Any, task_manager: Any) -> dict[str, Any]:
    """Results in lm-eval's layout that depend only on the editor and the edit count."""
    key = f"{lm.editor}/{lm.n_applied}" if lm.n_applied else "unedited/0"
    if os.environ.get("STAND_IN_DIE_AT") == key:
        os._exit(9)
    if os.environ.get("STAND_IN_OUTLIVE") == key:
        _wait_to_be_alone(Path(os.environ["STAND_IN_LOG"]))
    if "STAND_IN_LOG" in os.environ:
        with open(os.environ["STAND_IN_LOG"], "a") as handle:
            handle.write(f"{os.getpid()} {key}\n")
    time.sleep(0.05)
    damage = EDITOR_DAMAGE.get(lm.editor, 0.03) * lm.n_applied
    reliability = 0.1 if not lm.n_applied else 1.0 - damage
    return {
        "results": {
            "cap_a": {"alias": "cap_a", "acc,none": round(0.5 - damage, 6)},
            "zsre_edit": {"alias": "zsre_edit", "reliability_tf_em,none": round(reliability, 6)},
        },
        "group_subtasks": {"cap_a": [], "zsre_edit": []},
        "samples": {"cap_a": [{"doc_id": 0, "edits": lm.n_applied}]},
    }


def load_real_after_peers(config: Any, editor: str) -> Any:
    """The real ``edited-hf`` model, loaded once ``STAND_IN_BARRIER`` processes are up."""
    from lm_edit.studies.sweep.runner import load_model

    barrier = int(os.environ.get("STAND_IN_BARRIER", "0"))
    if barrier:
        _wait_for_peers(Path(os.environ["STAND_IN_LOG"]), barrier)
    return load_model(config, editor)
