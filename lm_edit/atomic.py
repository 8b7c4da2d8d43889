"""Atomic cache writes: a temporary file in the target folder, then a rename, so no reader
ever sees a half-written file.

A temporary file is named ``.<target name>~<pid>@<host>~<random>``. A writer killed before
its rename leaves one behind; :func:`remove_stale_temps` deletes those whose writer is gone
(same host, process no longer running) or that are older than :data:`STALE_AFTER_S`, and
keeps those of writers still at work."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

STALE_AFTER_S = 30 * 60
"""A temporary file or folder older than this is stale whoever wrote it."""

_TEMP = re.compile(r"^\..+~(?P<pid>\d+)@(?P<host>[^~/]*)~[^~]+$")


def temp_prefix(name: str) -> str:
    """Prefix of the temporary files and folders written on the way to ``name``."""
    host = socket.gethostname().replace("~", "-")
    return f".{name}~{os.getpid()}@{host}~"


def _writer_alive(pid: int, host: str) -> bool:
    """Whether the writer may still run: always for another host, else a process check."""
    if host != socket.gethostname().replace("~", "-") or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files and folders of killed writers in ``folder``; returns them."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for entry in folder.iterdir():
        match = _TEMP.match(entry.name)
        if match is None:
            continue
        with contextlib.suppress(FileNotFoundError):
            old = now - entry.lstat().st_mtime > STALE_AFTER_S
            if old or not _writer_alive(int(match["pid"]), match["host"]):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                logger.info("Removed %s, left behind by an interrupted write", entry)
                removed.append(entry)
    return removed


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_text(text: str, path: Path) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` atomically."""
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))
