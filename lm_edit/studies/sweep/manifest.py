"""The sweep folder's state: which checkpoints are finished, under which arguments.

``manifest.json`` records the sweep's fingerprinted arguments, package versions and one
entry per finished checkpoint. A checkpoint counts as finished only once its entry is in
the manifest, and the entry is written (atomically) after the checkpoint's results file
(also atomic): a run killed in between leaves a results file with no entry, and the next
run redoes that checkpoint. Editors and checkpoints are not part of the fingerprint, so a
later run may add editors or checkpoints to a finished sweep.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lm_edit.atomic import save_text

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK_NAME = ".sweep.lock"
FORMAT = 1
UNEDITED = "unedited"
PACKAGES = ("lm-edit", "lm_eval", "torch", "transformers", "datasets")


class SweepFolderError(ValueError):
    """The output folder holds a different sweep (or other files)."""


def fingerprint(arguments: dict[str, Any]) -> str:
    """A short, stable hash of JSON-serialisable arguments."""
    text = json.dumps(arguments, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide the numbers."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def checkpoint_key(editor: str, n_edits: int) -> str:
    """Manifest key of one checkpoint (``unedited/0`` for the unedited model)."""
    return f"{editor}/{n_edits}"


def checkpoint_dir(root: Path, editor: str, n_edits: int) -> Path:
    """Folder of one checkpoint's files."""
    if editor == UNEDITED:
        return root / UNEDITED
    return root / editor / f"edits_{n_edits:04d}"


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


@dataclass
class SweepState:
    """The manifest of one sweep folder, loaded or created."""

    root: Path
    arguments: dict[str, Any]
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = ""

    @classmethod
    def open(cls, root: Path, arguments: dict[str, Any], overwrite: bool = False) -> SweepState:
        """Resume the sweep in ``root``, or start one there. Refuses a folder holding a
        sweep with other arguments, or files that are not a sweep, unless ``overwrite``."""
        path = root / MANIFEST
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("fingerprint") == fingerprint(arguments):
                state = cls(root, arguments, saved.get("checkpoints", {}), saved["created"])
                logger.info("Resuming %s: %d checkpoint(s) finished", root, len(state.checkpoints))
                return state
            if not overwrite:
                changed = "; ".join(_differences(saved.get("arguments", {}), arguments))
                raise SweepFolderError(
                    f"{root} holds a sweep run with other arguments ({changed}). Use another "
                    "--output_path, re-run with the same arguments to resume, or pass "
                    "--overwrite to discard it."
                )
            cls._discard(root, saved)
        elif root.is_dir() and any(p.name != LOCK_NAME for p in root.iterdir()) and not overwrite:
            raise SweepFolderError(
                f"{root} is not empty and has no {MANIFEST}: it is not a sweep folder. Choose "
                "an empty or new --output_path (or pass --overwrite to write into it anyway)."
            )
        state = cls(root, arguments, {}, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        state.save()
        return state

    @staticmethod
    def _discard(root: Path, saved: dict[str, Any]) -> None:
        """Delete the folders of a previous sweep's checkpoints (``--overwrite``)."""
        logger.warning("--overwrite: discarding the previous sweep in %s", root)
        for key in saved.get("checkpoints", {}):
            editor = key.split("/", 1)[0]
            target = root / editor
            if target.is_dir():
                shutil.rmtree(target)

    def is_done(self, editor: str, n_edits: int) -> bool:
        """True when the checkpoint is in the manifest and its results file exists."""
        entry = self.checkpoints.get(checkpoint_key(editor, n_edits))
        return entry is not None and (self.root / entry["results"]).is_file()

    def finish(self, editor: str, n_edits: int, entry: dict[str, Any]) -> None:
        """Record a finished checkpoint (its results file must already be written)."""
        self.checkpoints[checkpoint_key(editor, n_edits)] = entry
        self.save()

    def save(self) -> None:
        """Write ``manifest.json`` atomically."""
        document = {
            "format": FORMAT,
            "fingerprint": fingerprint(self.arguments),
            "arguments": self.arguments,
            "versions": versions(),
            "created": self.created,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checkpoints": self.checkpoints,
        }
        save_text(json.dumps(document, indent=1, default=str) + "\n", self.root / MANIFEST)

    def saved_lines(self) -> list[str]:
        """One line per finished checkpoint: key and results file."""
        return [f"{key}: {self.root / e['results']}" for key, e in sorted(self.checkpoints.items())]
