"""A sweep stays inside its folder: editor names become folder names only when they are
plain names, every path the sweep writes or deletes is checked by :func:`inside` (symbolic
links followed), and ``--overwrite`` deletes only the files a manifest lists."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from lm_edit.editors.config import known_editors

logger = logging.getLogger(__name__)

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]*")
"""What an editor name may look like: it is a folder name in the sweep folder."""

UNEDITED = "unedited"
"""Checkpoint 0's key and folder, so no editor may take the name."""


class SweepFolderError(ValueError):
    """The output folder holds a different sweep (or other files), or a path would leave it."""


def is_safe_name(name: str) -> bool:
    """True when ``name`` can be a folder of the sweep: a plain name, not a path."""
    return bool(SAFE_NAME.fullmatch(name)) and ".." not in name and name != UNEDITED


def check_editor_names(names: Iterable[str]) -> None:
    """Refuse any name that is not a known editor with a plain name (``--editors``)."""
    known = [name for name in known_editors() if is_safe_name(name)]
    for name in names:
        if name in known:
            continue
        hint = ""
        if "/" in name or "\\" in name or ".." in name:
            hint = " Editors are given by name, not path: add a YAML to the editors folder."
        raise ValueError(
            f"--editors: {name!r} is not an editor name; known: {', '.join(known)}.{hint}"
        )


def inside(root: Path, path: Path) -> Path:
    """Return ``path`` if it resolves (symbolic links followed) to a place strictly inside
    ``root``; raise :class:`SweepFolderError` otherwise."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    if base not in target.parents:
        raise SweepFolderError(
            f"{path} resolves to {target}, outside the sweep folder {base}: a sweep writes "
            "and deletes only inside its folder. Remove the symbolic link, or choose another "
            "--output_path."
        )
    return path


def remove_files(root: Path, relative: Iterable[str]) -> int:
    """Delete the files ``relative`` (paths below ``root``), then the folders they leave
    empty; every path is checked before anything is deleted. Return the count deleted."""
    targets = [inside(root, root / name) for name in relative]
    removed = 0
    for path in targets:
        if path.is_file():
            path.unlink()
            removed += 1
    for path in targets:
        for folder in path.parents:
            if folder == root or not folder.is_relative_to(root):
                break
            try:
                os.rmdir(inside(root, folder))
            except OSError:
                break
    return removed
