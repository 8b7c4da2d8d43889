"""The sweep folder's state: which checkpoints are finished, under which arguments.

``manifest.json`` records the sweep's fingerprinted arguments, package versions and one
entry per finished checkpoint. A checkpoint counts as finished only once its entry is in
the manifest, and the entry is written (atomically) after the checkpoint's results file
(also atomic): a run killed in between leaves a results file with no entry, and the next
run redoes that checkpoint. Editors and checkpoints are not part of the fingerprint, so a
later run may add editors or checkpoints to a finished sweep; each editor's hyperparameters
are recorded per editor (``editor_arguments``) and checked when that editor runs again.
``--overwrite`` deletes only the files the previous manifest lists.

Several workers may finish checkpoints of one sweep at once: every change of the manifest
is a read-merge-write under the manifest lock (:func:`.lock.manifest_lock`), so no
worker's entry is lost, and the write itself is atomic, so readers never need the lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lm_edit.atomic import save_text
from lm_edit.studies.sweep.folder import UNEDITED, SweepFolderError, inside, remove_files
from lm_edit.studies.sweep.identity import is_file_record, plain
from lm_edit.studies.sweep.lock import COORDINATION, manifest_lock
from lm_edit.studies.sweep.lock import LOCK_NAME as LOCK_NAME  # re-exported

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 2
PACKAGES = ("lm-edit", "lm_eval", "torch", "transformers", "datasets")


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
    """Folder of one checkpoint's files (checked to lie inside ``root``)."""
    if editor == UNEDITED:
        return inside(root, root / UNEDITED)
    return inside(root, root / editor / f"edits_{n_edits:04d}")


def read_manifest(path: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` at ``path``; a truncated or edited file raises
    :class:`SweepFolderError` naming it and the way out."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        saved = error
    entries = saved.get("checkpoints") if isinstance(saved, dict) else None
    readable = isinstance(entries, dict) and all(
        isinstance(e, dict) and isinstance(e.get("results"), str) for e in entries.values()
    )
    if not readable:
        why = f" ({saved})" if isinstance(saved, Exception) else ""
        raise SweepFolderError(
            f"{path} is not a readable sweep manifest{why}: it was cut short or edited. "
            "Restore it from a copy, or start again with another --output_path, or with "
            "--overwrite (which replaces only this file)."
        )
    return saved


def _change(name: str, old: Any, new: Any) -> list[str]:
    """How argument ``name`` changed, naming a changed file by its path and digests."""
    if old == new:
        return []
    if is_file_record(old) and is_file_record(new) and old["file"] == new["file"]:
        return [
            f"{name} file {old['file']} changed since the study started (sha256 "
            f"{old['sha256'][:12]}… → {new['sha256'][:12]}…)"
        ]
    if isinstance(old, dict) and isinstance(new, dict) and not is_file_record(old):
        return _differences(old, new)
    return [f"{name}: {old!r} -> {new!r}"]


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per changed argument (the entries of ``model_args`` by their own names)."""
    keys = sorted(set(old) | set(new))
    return [line for k in keys for line in _change(k, old.get(k), new.get(k))]


def _holds_files(root: Path) -> bool:
    """True when ``root`` is a folder with anything but a sweep's lock files in it."""
    return root.is_dir() and any(p.name not in COORDINATION for p in root.iterdir())


@dataclass
class SweepState:
    """The manifest of one sweep folder, loaded or created."""

    root: Path
    arguments: dict[str, Any]
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = ""
    editor_arguments: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        root: Path,
        arguments: dict[str, Any],
        overwrite: bool = False,
        editor_arguments: dict[str, dict[str, Any]] | None = None,
    ) -> SweepState:
        """Resume the sweep in ``root``, or start one there. Refuses a folder holding a
        sweep with other arguments (shared, or of an editor in ``editor_arguments`` that
        ran before), or files that are not a sweep, unless ``overwrite``."""
        arguments, editors = plain(arguments), plain(editor_arguments or {})
        with manifest_lock(root):
            return cls._open(root, arguments, overwrite, editors)

    @classmethod
    def _open(
        cls,
        root: Path,
        arguments: dict[str, Any],
        overwrite: bool,
        editors: dict[str, dict[str, Any]],
    ) -> SweepState:
        path = inside(root, root / MANIFEST)
        if path.is_file():
            try:
                saved = read_manifest(path)
            except SweepFolderError:
                if not overwrite:
                    raise
                logger.warning("--overwrite: replacing the unreadable %s", path)
                saved = {}
            changed = cls._changes(saved, arguments, editors) if saved else []
            if saved and not changed:
                known = saved.get("editor_arguments", {})
                created = saved.get("created", "")
                state = cls(root, arguments, saved["checkpoints"], created, {**known, **editors})
                if state.editor_arguments != known:
                    state.save()
                logger.info("Resuming %s: %d checkpoint(s) finished", root, len(state.checkpoints))
                return state
            if changed and not overwrite:
                raise SweepFolderError(
                    f"{root} holds a sweep run with other arguments ({'; '.join(changed)}). "
                    "Use another --output_path, re-run with the same arguments to resume, or "
                    "pass --overwrite to discard it."
                )
            cls._discard(root, saved)
        elif _holds_files(root) and not overwrite:
            raise SweepFolderError(
                f"{root} is not empty and has no {MANIFEST}: it is not a sweep folder. Choose "
                "an empty or new --output_path (or pass --overwrite to write into it anyway)."
            )
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        state = cls(root, arguments, {}, created, editors)
        state.save()
        return state

    @staticmethod
    def _changes(
        saved: dict[str, Any], arguments: dict[str, Any], editors: dict[str, dict[str, Any]]
    ) -> list[str]:
        """What differs between a saved sweep and these arguments (empty: the same)."""
        changed = _differences(saved.get("arguments", {}), arguments)
        if saved.get("format") != FORMAT:
            changed.insert(0, f"manifest format {saved.get('format')} -> {FORMAT}")
        if not changed and saved.get("fingerprint") != fingerprint(arguments):
            changed = [f"fingerprint: {saved.get('fingerprint')!r} -> {fingerprint(arguments)!r}"]
        known = saved.get("editor_arguments", {})
        for editor in sorted(set(known) & set(editors)):
            changed += [
                f"editor {editor}: {line}" for line in _differences(known[editor], editors[editor])
            ]
        return changed

    @staticmethod
    def _discard(root: Path, saved: dict[str, Any]) -> None:
        """Delete the files a previous sweep's manifest lists (``--overwrite``), nothing
        else: files of its own and files beside them stay."""
        listed = [
            name
            for entry in saved.get("checkpoints", {}).values()
            for name in entry.get("files") or [entry["results"]]
        ]
        removed = remove_files(root, listed)
        logger.warning("--overwrite: deleted the previous sweep's %d file(s) in %s", removed, root)

    def is_done(self, editor: str, n_edits: int) -> bool:
        """True when the checkpoint is in the manifest and its results file exists."""
        entry = self.checkpoints.get(checkpoint_key(editor, n_edits))
        return entry is not None and (self.root / entry["results"]).is_file()

    def finish(self, editor: str, n_edits: int, entry: dict[str, Any]) -> None:
        """Record a finished checkpoint (its results file must already be written),
        merged with what other workers recorded meanwhile."""
        with manifest_lock(self.root):
            self.refresh()
            self.checkpoints[checkpoint_key(editor, n_edits)] = entry
            self.save()

    def refresh(self) -> None:
        """Take in the checkpoints and editor arguments other workers recorded."""
        path = inside(self.root, self.root / MANIFEST)
        if not path.is_file():
            return
        saved = read_manifest(path)
        if saved.get("fingerprint") != fingerprint(self.arguments):
            raise SweepFolderError(
                f"{path} was replaced by a sweep with other arguments while this one ran; "
                "stopping without writing."
            )
        self.checkpoints = {**self.checkpoints, **saved["checkpoints"]}
        self.editor_arguments = {**saved.get("editor_arguments", {}), **self.editor_arguments}
        self.created = saved.get("created", self.created)

    def save(self) -> None:
        """Write ``manifest.json`` atomically."""
        document = {
            "format": FORMAT,
            "fingerprint": fingerprint(self.arguments),
            "arguments": self.arguments,
            "versions": versions(),
            "editor_arguments": self.editor_arguments,
            "created": self.created,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checkpoints": self.checkpoints,
        }
        path = inside(self.root, self.root / MANIFEST)
        save_text(json.dumps(document, indent=1, default=str) + "\n", path)

    def saved_lines(self) -> list[str]:
        """One line per finished checkpoint: key and results file."""
        return [f"{key}: {self.root / e['results']}" for key, e in sorted(self.checkpoints.items())]
