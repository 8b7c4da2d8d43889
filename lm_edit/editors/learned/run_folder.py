"""The output folder of ``lm-edit train mend``: what it may hold and how a run in it is
recognised.

A training folder holds :data:`RUN_FILE` (the run's settings, written first, JSON), the
checkpoint (:data:`~.checkpoint.CHECKPOINT_FILE`) and, once the run is done,
:data:`REPORT_FILE` (the final validation), plus the temporary files of atomic writes in
progress. Training refuses a folder holding anything else, or a run with other settings;
it never writes outside the folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lm_edit.atomic import remove_stale_temps, save_text
from lm_edit.editors.learned.checkpoint import CHECKPOINT_FILE

RUN_FILE = "training.json"
REPORT_FILE = "validation.json"
RUN_KIND = "lm-edit train mend"
OWN_FILES = frozenset({RUN_FILE, REPORT_FILE, CHECKPOINT_FILE})
_OWN_TEMP = re.compile(r"^\.(" + "|".join(re.escape(n) for n in sorted(OWN_FILES)) + r")~.+~.+$")


class OutputFolderError(ValueError):
    """The output folder holds something other than this training run."""


def check_output(folder: Path) -> None:
    """Refuse a path that is not a folder, or a folder holding files this command did
    not write (nothing is deleted)."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise OutputFolderError(f"--output {folder} exists and is not a folder; choose a new path.")
    if not folder.exists():
        return
    remove_stale_temps(folder)
    foreign = sorted(
        p.name for p in folder.iterdir() if p.name not in OWN_FILES and not _OWN_TEMP.match(p.name)
    )
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        shown = ", ".join(foreign[:5]) + more
        raise OutputFolderError(
            f"--output {folder} holds files lm-edit train mend did not write ({shown}); "
            "choose a new or empty folder (nothing was deleted)."
        )
    run = folder / RUN_FILE
    if run.exists() and read_run(folder).get("kind") != RUN_KIND:
        raise OutputFolderError(f"--output {folder}: {RUN_FILE} is not an lm-edit training run.")


def read_run(folder: Path) -> dict[str, Any]:
    """The run description in ``folder`` (empty when there is none)."""
    path = folder / RUN_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OutputFolderError(f"{path} cannot be read ({error}); choose a new folder.") from error
    return data if isinstance(data, dict) else {}


def write_json(data: dict[str, Any], folder: Path, name: str) -> Path:
    """Write ``data`` as ``folder/name`` atomically."""
    path = folder / name
    save_text(json.dumps(data, indent=1, sort_keys=True) + "\n", path)
    return path


def describe_difference(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """The settings that differ, as ``name: saved (run) vs current (now)``."""
    keys = sorted(set(saved) | set(current))
    return "; ".join(
        f"{k}: {saved.get(k)!r} (run) vs {current.get(k)!r} (now)"
        for k in keys
        if saved.get(k) != current.get(k)
    )
