"""The output folder of ``lm-edit train <editor>``: what it may hold and how a run in it is
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
from lm_edit.editors.learned.checkpoint import MEND_CHECKPOINT, CheckpointKind

RUN_FILE = "training.json"
REPORT_FILE = "validation.json"
RUN_KIND = MEND_CHECKPOINT.command


class OutputFolderError(ValueError):
    """The output folder holds something other than this training run."""


def own_files(kind: CheckpointKind) -> frozenset[str]:
    """The files a training run of ``kind`` writes into its folder."""
    return frozenset({RUN_FILE, REPORT_FILE, kind.file, *kind.caches})


def check_output(folder: Path, kind: CheckpointKind = MEND_CHECKPOINT) -> None:
    """Refuse a path that is not a folder, or a folder holding files ``kind``'s training
    command did not write, or another editor's run (nothing is deleted)."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise OutputFolderError(f"--output {folder} exists and is not a folder; choose a new path.")
    if not folder.exists():
        return
    remove_stale_temps(folder)
    owned = own_files(kind)
    temp = re.compile(r"^\.(" + "|".join(re.escape(n) for n in sorted(owned)) + r")~.+~.+$")
    foreign = sorted(
        p.name for p in folder.iterdir() if p.name not in owned and not temp.match(p.name)
    )
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        shown = ", ".join(foreign[:5]) + more
        raise OutputFolderError(
            f"--output {folder} holds files {kind.command} did not write ({shown}); "
            "choose a new or empty folder (nothing was deleted)."
        )
    run = folder / RUN_FILE
    if run.exists():
        found = read_run(folder).get("kind")
        if found != kind.command:
            known = isinstance(found, str) and found.startswith("lm-edit train ")
            what = f"a `{found}` run" if known else "not an lm-edit training run"
            raise OutputFolderError(
                f"--output {folder}: {RUN_FILE} is {what}, so `{kind.command}` cannot use "
                "this folder; choose another."
            )


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
