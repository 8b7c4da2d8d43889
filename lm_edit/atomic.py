"""Atomic cache writes: a temporary file in the target folder, then a rename, so no reader
ever sees a half-written file and an interrupted write leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_tensors(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` atomically (load back with ``weights_only=True``)."""
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def save_text(text: str, path: Path) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
