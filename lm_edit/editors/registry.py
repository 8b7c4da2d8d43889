"""Editor registry: a name resolves to its YAML in ``editors/``, the YAML's
``implementation`` to a registered :class:`~lm_edit.editors.base.Editor` subclass.

Implementations register themselves when their module is imported; every module and
package under ``lm_edit/editors/`` is imported on first use, so adding an editor means
one module (or folder) here plus one YAML in ``editors/``.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, fields
from typing import Any

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.editors.base import IMPLEMENTATIONS, Editor, EditorConfig
from lm_edit.editors.config import (
    build_config,
    family_settings,
    load_editor_chain,
    model_facts,
    read_user_config,
)

_INFRASTRUCTURE = {"base", "config", "layers", "registry"}


def implementations() -> dict[str, type[Editor]]:
    """Every registered implementation (importing the editor modules once)."""
    import lm_edit.editors as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(IMPLEMENTATIONS)


@dataclass(frozen=True)
class EditorSpec:
    """A resolved editor: its name, implementation, final config and matched model family."""

    name: str
    implementation: str
    config: EditorConfig
    family: str | None


def implementation_of(name: str, chain: list[dict[str, Any]] | None = None) -> type[Editor]:
    """The registered class that runs editor ``name`` (from its YAML's ``implementation``)."""
    chain = chain if chain is not None else load_editor_chain(name)
    implementation = next(
        (s["implementation"] for s in reversed(chain) if "implementation" in s), "locate"
    )
    known = implementations()
    if implementation not in known:
        raise ValueError(
            f"editors/{name}.yaml names unknown implementation {implementation!r}; "
            f"registered: {', '.join(sorted(known))}."
        )
    return known[implementation]


def resolve_editor(
    name: str,
    model: Any,
    overrides: dict[str, Any] | None = None,
    editor_config: str | None = None,
) -> EditorSpec:
    """Merge YAML defaults, the matching model family, a user YAML and ``overrides``."""
    chain = load_editor_chain(name)
    editor_cls = implementation_of(name, chain)
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
    config = build_config(editor_cls.config_class, values, name)
    implementation = next(k for k, v in implementations().items() if v is editor_cls)
    return EditorSpec(name, implementation, config, family)


def create_editor(spec: EditorSpec, anatomy: ModelAnatomy, seed: int) -> Editor:
    """A fresh editor instance (owning its own cross-batch state) for one stream."""
    editor_cls = implementations()[spec.implementation]
    return editor_cls(spec.config, name=spec.name, anatomy=anatomy, seed=seed)


def hyperparameter_names(name: str) -> set[str]:
    """Every hyperparameter editor ``name`` accepts."""
    return {f.name for f in fields(implementation_of(name).config_class)}
