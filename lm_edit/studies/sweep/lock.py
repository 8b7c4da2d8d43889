"""One sweep per folder: an exclusive lock on ``<folder>/.sweep.lock`` while a sweep runs,
so a second sweep started on the same folder stops at once instead of interleaving its
writes with the first one's."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lm_edit.studies.sweep.folder import SweepFolderError, inside
from lm_edit.studies.sweep.manifest import LOCK_NAME


@contextmanager
def sweep_folder_lock(root: Path) -> Iterator[None]:
    """Hold the folder's lock for the duration of the block (released when the process
    ends, however it ends); raise :class:`SweepFolderError` if another process holds it."""
    root.mkdir(parents=True, exist_ok=True)
    path = inside(root, root / LOCK_NAME)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise SweepFolderError(
                f"Another lm-edit sweep (pid {owner}) is writing to {root}. Wait for it to "
                "finish or stop it, or give this sweep another --output_path."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
