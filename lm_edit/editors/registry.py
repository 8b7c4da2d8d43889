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
    known_editors,
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
    values, family, _ = _chain_values(chain, model_facts(model), editor_config)
    values.update(overrides or {})
    config = build_config(editor_cls.config_class, values, name)
    implementation = next(k for k, v in implementations().items() if v is editor_cls)
    return EditorSpec(name, implementation, config, family)


def _chain_values(
    chain: list[dict[str, Any]], facts: dict[str, Any] | None, editor_config: str | None
) -> tuple[dict[str, Any], str | None, set[str]]:
    """The values the YAML chain, the matching family and the user YAML give, the matched
    family, and (when ``facts`` is None, the model unknown) the names a family could set."""
    values: dict[str, Any] = {}
    family = None
    by_family: set[str] = set()
    for spec in chain:
        values.update(spec.get("defaults") or {})
        by_family -= set(spec.get("defaults") or {})
        if facts is None:
            by_family |= {k for f in spec.get("families") or [] for k in f.get("set") or {}}
            continue
        matched, family_values = family_settings(spec, facts)
        values.update(family_values)
        family = matched or family
    if editor_config:
        user = read_user_config(editor_config)
        values.update(user)
        by_family -= set(user)
    return values, family, by_family


def effective_hyperparameters(
    name: str, overrides: dict[str, Any], editor_config: str | None = None
) -> tuple[EditorConfig, dict[str, Any]]:
    """Editor ``name``'s configuration with ``overrides`` on a model no family matches,
    and the overrides that change it: converted to their declared types, less those equal
    to the value the editor takes anyway (its YAMLs, then ``editor_config``). An override
    that some model family sets is kept, since the value it replaces depends on the model."""
    chain = load_editor_chain(name)
    config_class = implementation_of(name, chain).config_class
    values, _, by_family = _chain_values(chain, None, editor_config)
    default = build_config(config_class, values, name)
    config = build_config(config_class, {**values, **overrides}, name)
    changed = {
        k: getattr(config, k)
        for k in overrides
        if k in by_family or getattr(config, k) != getattr(default, k)
    }
    return config, changed


def create_editor(spec: EditorSpec, anatomy: ModelAnatomy, seed: int) -> Editor:
    """A fresh editor instance (owning its own cross-batch state) for one stream."""
    editor_cls = implementations()[spec.implementation]
    return editor_cls(spec.config, name=spec.name, anatomy=anatomy, seed=seed)


def hyperparameter_names(name: str) -> set[str]:
    """Every hyperparameter editor ``name`` accepts."""
    return {f.name for f in fields(implementation_of(name).config_class)}


def all_hyperparameter_names() -> set[str]:
    """Every name some shipped editor takes as a hyperparameter."""
    return {name for editor in known_editors() for name in hyperparameter_names(editor)}
