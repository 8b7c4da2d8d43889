"""What identifies a sweep's numbers, beyond how its arguments were spelt.

``--model_args`` are normalised against their declared defaults: ``edit_seed=0`` or an
editor hyperparameter equal to the value the editor takes anyway is the same sweep as one
without it. Every argument declared with ``file=True`` (``edit_data``, ``editor_config``,
``stats_source``...) whose value names a local file is recorded with the sha256 of that
file's bytes, so a file edited between two runs is a different sweep.

Editor hyperparameters are identified per editor (the same ``v_lr=0.5`` is a default for
one editor and a change for another); the rest of ``--model_args`` is shared by all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from lm_edit.core.arguments import EditArguments, build, file_fields
from lm_edit.data.sources import BUILTIN_NAMES, resolve
from lm_edit.editors.registry import (
    all_hyperparameter_names,
    effective_hyperparameters,
    hyperparameter_names,
)

EDIT_ARGUMENTS = frozenset(f.name for f in fields(EditArguments))


def file_digest(path: Path) -> str:
    """sha256 (hex) of the bytes of ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def named_file(name: str, value: Any) -> Path | None:
    """The local file that argument ``name`` reads, if its value names one (an
    ``edit_data`` built-in name counts when it resolves to a local copy)."""
    if not isinstance(value, str):
        return None
    if name == "edit_data" and value in BUILTIN_NAMES:
        source = resolve(value)
        return source if isinstance(source, Path) else None
    path = Path(value).expanduser()
    return path if path.is_file() else None


def is_file_record(value: Any) -> bool:
    """True for the ``{"file": ..., "sha256": ...}`` that stands for a file argument."""
    return isinstance(value, dict) and set(value) == {"file", "sha256"}


def with_files(values: dict[str, Any], config: Any) -> dict[str, Any]:
    """``values`` with each file argument of dataclass ``config`` that names a local file
    replaced by ``{"file": path, "sha256": digest}`` (the effective value, given or not)."""
    out = dict(values)
    for name in file_fields(type(config)):
        path = named_file(name, getattr(config, name))
        if path is not None:
            out[name] = {"file": str(path), "sha256": file_digest(path)}
    return out


def plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def _hyperparameter_names() -> set[str]:
    """Every name some known editor takes as a hyperparameter."""
    return all_hyperparameter_names()


def edit_arguments(model_args: dict[str, Any]) -> EditArguments:
    """The ``edited-hf`` edit arguments among ``model_args``, converted and checked."""
    given = {k: v for k, v in model_args.items() if k in EDIT_ARGUMENTS}
    return build(EditArguments, given, "edited-hf")


def shared_model_args(model_args: dict[str, Any]) -> dict[str, Any]:
    """``model_args`` as every editor of the sweep sees them: the edit arguments that
    differ from their defaults, file arguments with their digests, and every other
    argument but editor hyperparameters as given."""
    parsed = edit_arguments(model_args)
    default = EditArguments()
    changed = {
        spec.name: getattr(parsed, spec.name)
        for spec in fields(EditArguments)
        if getattr(parsed, spec.name) != getattr(default, spec.name)
    }
    hyperparameters = _hyperparameter_names()
    rest = {
        k: v for k, v in model_args.items() if k not in EDIT_ARGUMENTS and k not in hyperparameters
    }
    return plain({**rest, **with_files(changed, parsed)})


def editor_model_args(editor: str, model_args: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters of ``editor`` that ``model_args`` change (file arguments with
    their digests). Names only other editors of the sweep take do not reach this editor
    (:func:`model_args_for`)."""
    names = hyperparameter_names(editor)
    overrides = {k: v for k, v in model_args.items() if k in names}
    editor_config = edit_arguments(model_args).editor_config
    config, changed = effective_hyperparameters(editor, overrides, editor_config)
    return plain(with_files(changed, config))


def model_args_for(editor: str, model_args: dict[str, Any]) -> dict[str, Any]:
    """``model_args`` as editor ``editor`` loads them: without the hyperparameters that
    only other editors take (``cache_values`` goes to ROME, not to FT-L or the unedited
    model)."""
    foreign = _hyperparameter_names() - hyperparameter_names(editor)
    return {k: v for k, v in model_args.items() if k not in foreign}


def unclaimed_hyperparameters(editors: list[str], model_args: dict[str, Any]) -> list[str]:
    """Editor hyperparameters in ``model_args`` that none of ``editors`` takes."""
    claimed = set().union(*(hyperparameter_names(e) for e in editors))
    return sorted((set(model_args) & _hyperparameter_names()) - claimed)
