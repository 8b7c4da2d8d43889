"""Every path lm-edit reads or writes by default: its shipped data, task and editor folders
(for source checkouts and installed wheels alike) and its cache folders.

The repository keeps its lm-eval task YAMLs in ``tasks/`` at the repository root. A wheel
ships the same files as package data in ``lm_edit/tasks`` (see the hatchling
``force-include`` in ``pyproject.toml``), while an editable install runs the package from
the checkout, where only the root-level directory exists. :func:`tasks_dir` hides that
difference.

This module must stay importable with the standard library alone: the startup bootstrap
(:mod:`lm_edit._plugin`) loads it by file path, without importing the ``lm_edit`` package.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
"""The directory of the ``lm_edit`` package itself."""

CACHE_ENV = "LM_EDIT_CACHE"
"""Environment variable that moves every lm-edit cache (default ``~/.cache/lm_edit``)."""

DEMO_EDITS = PACKAGE_DIR / "data" / "demo_edits.jsonl"
"""The shipped demo edit set (``edit_data=demo``)."""

LM_PROMPTS = PACKAGE_DIR / "data" / "lm_prompts.txt"
"""The shipped prompts of the sweep's language-modelling check."""


def data_dir(name: str) -> Path:
    """Return the directory ``name`` as shipped with the package or kept in the checkout.

    Args:
        name: A directory name such as ``"tasks"``.

    Returns:
        ``lm_edit/<name>`` when that directory exists (a wheel install), otherwise
        ``<repository root>/<name>`` (an editable install or a plain checkout). The
        returned path is not guaranteed to exist.
    """
    packaged = PACKAGE_DIR / name
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / name


def tasks_dir() -> Path:
    """Return the directory holding lm-edit's lm-eval task YAMLs (and their ``utils.py``).

    Returns:
        ``lm_edit/tasks`` in a wheel install, ``<repository root>/tasks`` in an editable
        install or a checkout.
    """
    return data_dir("tasks")


def editors_dir() -> Path:
    """Return the directory holding the editor YAMLs.

    A wheel ships them as ``lm_edit/editor_configs`` (``lm_edit/editors`` is the Python
    subpackage); a checkout keeps them in ``editors/`` at the repository root.
    """
    packaged = PACKAGE_DIR / "editor_configs"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "editors"


def cache_root() -> Path:
    """Folder of all lm-edit caches: ``$LM_EDIT_CACHE``, else ``~/.cache/lm_edit``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "lm_edit"


def stats_cache_dir(fingerprint: str) -> Path:
    """Key statistics (and matrices derived from them) of the model with ``fingerprint``."""
    return cache_root() / "stats" / fingerprint


_VALUES_FOLDER: ContextVar[Path | None] = ContextVar("values_folder", default=None)


@contextmanager
def values_kept_in(folder: Path) -> Iterator[None]:
    """Inside the block, cached target values live in ``folder`` instead of
    ``cache_root() / "values"`` (``lm-edit sweep`` keeps them in its own folder, so that
    a copy of the folder resumes without optimising the earlier edits' values again)."""
    token = _VALUES_FOLDER.set(Path(folder))
    try:
        yield
    finally:
        _VALUES_FOLDER.reset(token)


def values_cache_dir(digest: str) -> Path:
    """Cached target values v* of the model state with weights ``digest``."""
    folder = _VALUES_FOLDER.get()
    return (folder if folder is not None else cache_root() / "values") / digest


def models_cache_dir() -> Path:
    """Converted offline models (the demo model's safetensors copy)."""
    return cache_root() / "models"
