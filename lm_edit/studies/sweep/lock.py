"""Locks of a sweep folder, all ``flock`` locks on small files in the folder, so the
operating system releases them when their process ends, however it ends:

- ``.sweep.lock``, the folder lock: every sweep process holds it shared while it runs;
  ``--overwrite`` (which deletes files) needs it exclusive, so it never runs beside a
  worker, and a folder held exclusive refuses every other sweep at once.
- ``.manifest.lock``: held exclusive for the few milliseconds a process reads, merges and
  rewrites ``manifest.json``.
- ``.claims/<run>.lock``: held by the worker that runs one editor's stream (see
  :mod:`.claims`).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from lm_edit.studies.sweep.folder import SweepFolderError, inside

LOCK_NAME = ".sweep.lock"
MANIFEST_LOCK = ".manifest.lock"
CLAIMS = ".claims"
COORDINATION = frozenset({LOCK_NAME, MANIFEST_LOCK, CLAIMS})
"""Names in a sweep folder that are locks, not results."""


def owner() -> str:
    """Who holds a lock: ``pid@host``."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _write_owner(handle: IO[str]) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(owner())
    handle.flush()


def _read_owner(handle: IO[str]) -> str:
    handle.seek(0)
    return handle.read().strip() or "unknown"


@contextmanager
def flock_file(path: Path, *, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """Hold an flock on ``path`` for the block; yield False (holding nothing) when
    ``wait`` is False and another process holds a conflicting lock."""
    with open(path, "a+") as handle:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(handle, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            _write_owner(handle)
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def held_by(path: Path) -> str:
    """The ``pid@host`` last written into lock file ``path``."""
    with open(path, "a+") as handle:
        return _read_owner(handle)


@contextmanager
def sweep_folder_lock(root: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold the folder lock for the block, shared (sweep workers of one study) or
    exclusive; raise :class:`SweepFolderError` if it is held in a conflicting way."""
    root.mkdir(parents=True, exist_ok=True)
    path = inside(root, root / LOCK_NAME)
    with flock_file(path, shared=shared, wait=False) as held:
        if not held:
            pid = held_by(path).split("@")[0]
            raise SweepFolderError(
                f"Another lm-edit sweep (pid {pid}) is writing to {root}. Wait for it to "
                "finish or stop it, or give this sweep another --output_path."
                + ("" if shared else " (--overwrite needs the folder to itself.)")
            )
        yield


@contextmanager
def manifest_lock(root: Path) -> Iterator[None]:
    """Hold the manifest lock (waiting for it) for one read-merge-write of the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    with flock_file(inside(root, root / MANIFEST_LOCK)):
        yield
