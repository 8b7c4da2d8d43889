"""Where lm-edit's data directories live, for source checkouts and installed wheels alike.

The repository keeps its lm-eval task YAMLs in ``tasks/`` at the repository root. A wheel
ships the same files as package data in ``lm_edit/tasks`` (see the hatchling
``force-include`` in ``pyproject.toml``), while an editable install runs the package from
the checkout, where only the root-level directory exists. :func:`tasks_dir` hides that
difference.

This module must stay importable with the standard library alone: the startup bootstrap
(:mod:`lm_edit._plugin`) loads it by file path, without importing the ``lm_edit`` package.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
"""The directory of the ``lm_edit`` package itself."""


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
