"""Editor registry: a name resolves to its YAML in ``editors/`` and the YAML's
``implementation`` to the Python class that runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.editors.base import Editor, EditRecord
from lm_edit.editors.config import (
    UnknownEditorError,
    build_config,
    family_settings,
    known_editors,
    load_editor_chain,
    model_facts,
    read_user_config,
)
from lm_edit.editors.locate.editor import LocateConfig, LocateEditor
from lm_edit.editors.none import NoOpConfig, NoOpEditor

IMPLEMENTATIONS: dict[str, tuple[type, type]] = {
    "locate": (LocateEditor, LocateConfig),
    "none": (NoOpEditor, NoOpConfig),
}

__all__ = [
    "EditRecord",
    "Editor",
    "EditorSpec",
    "UnknownEditorError",
    "create_editor",
    "hyperparameter_names",
    "known_editors",
    "resolve_editor",
]


@dataclass(frozen=True)
class EditorSpec:
    """A resolved editor: its name, implementation, final config and where values came from."""

    name: str
    implementation: str
    config: Any
    family: str | None


def resolve_editor(
    name: str,
    model,
    overrides: dict[str, Any] | None = None,
    editor_config: str | None = None,
) -> EditorSpec:
    """Merge YAML defaults, the matching model family, a user YAML and ``overrides``."""
    chain = load_editor_chain(name)
    implementation = _implementation(name, chain)
    _, config_cls = IMPLEMENTATIONS[implementation]
    facts = model_facts(model)
    values: dict[str, Any] = {}
    family = None
    for spec in chain:
        values.update(spec.get("defaults") or {})
        matched, family_values = family_settings(spec, facts)
        values.update(family_values)
        family = matched or family
    if editor_config:
        values.update(read_user_config(editor_config))
    values.update(overrides or {})
    return EditorSpec(name, implementation, build_config(config_cls, values, name), family)


def _implementation(name: str, chain: list[dict[str, Any]]) -> str:
    implementation = next(
        (s["implementation"] for s in reversed(chain) if "implementation" in s), "locate"
    )
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"editors/{name}.yaml names unknown implementation {implementation!r}.")
    return implementation


def create_editor(spec: EditorSpec, anatomy: ModelAnatomy, seed: int) -> Editor:
    """A fresh editor instance (owning its own cross-batch state) for one stream."""
    editor_cls, _ = IMPLEMENTATIONS[spec.implementation]
    return editor_cls(spec.config, name=spec.name, anatomy=anatomy, seed=seed)


def hyperparameter_names(name: str) -> set[str]:
    """Every hyperparameter editor ``name`` accepts."""
    _, config_cls = IMPLEMENTATIONS[_implementation(name, load_editor_chain(name))]
    return set(config_cls.__dataclass_fields__)
