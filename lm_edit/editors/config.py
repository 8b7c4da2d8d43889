"""Editor configuration: ``editors/<name>.yaml`` defaults, then the first matching model
family, then a user YAML (``editor_config=``), then keyword overrides (``layers=``...).
A YAML that ``extends`` another applies the parent's defaults and family first, then its
own defaults and family.

An editor YAML looks like::

    extends: memit                   # optional: start from another editor's YAML
    implementation: locate          # which Python class runs it
    description: ...
    defaults: {solver: equality, ...}
    families:                        # first match wins; matched on the model's config
      - name: GPT-2 XL
        match: {model_type: gpt2, num_layers: 48}
        set: {layers: [17]}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from lm_edit.core.arguments import build
from lm_edit.paths import editors_dir


class UnknownEditorError(KeyError):
    """The editor name has no YAML in the editors folder."""

    def __str__(self) -> str:
        return str(self.args[0])


def known_editors() -> list[str]:
    """Names of all shipped editors (one YAML each)."""
    return sorted(p.stem for p in editors_dir().glob("*.yaml"))


def load_editor_yaml(name: str) -> dict[str, Any]:
    """The parsed YAML of editor ``name`` (``yaml.safe_load``)."""
    path = editors_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UnknownEditorError(
            f"Unknown editor {name!r}. Known editors: {', '.join(known_editors())}."
        )
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def load_editor_chain(name: str) -> list[dict[str, Any]]:
    """The YAML of editor ``name`` preceded by the YAMLs it ``extends`` (root first)."""
    chain: list[dict[str, Any]] = []
    seen: list[str] = []
    current: str | None = name
    while current is not None:
        if current in seen:
            raise ValueError(f"editors/{name}.yaml: 'extends' forms a cycle: {seen + [current]}")
        seen.append(current)
        spec = load_editor_yaml(current)
        chain.insert(0, spec)
        current = spec.get("extends")
    return chain


def model_facts(model) -> dict[str, Any]:
    """The facts a family ``match`` can test: model_type, num_layers, hidden_size,
    intermediate_size."""
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    inner = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
    return {
        "model_type": config.model_type,
        "num_layers": layers,
        "hidden_size": hidden,
        "intermediate_size": inner,
    }


def family_settings(spec: dict[str, Any], facts: dict[str, Any]) -> tuple[str | None, dict]:
    """Name and settings of the first family whose ``match`` agrees with ``facts``."""
    for family in spec.get("families") or []:
        if all(facts.get(k) == v for k, v in family.get("match", {}).items()):
            return family.get("name"), dict(family.get("set") or {})
    return None, {}


def build_config(config_cls: type, values: dict[str, Any], editor: str) -> Any:
    """Instantiate ``config_cls`` from ``values``, converting strings from the command line
    and checking declared bounds; every error names the editor, the hyperparameter, the
    value and what is allowed."""
    return build(config_cls, values, f"editor {editor!r}", "hyperparameter")


def read_user_config(path: str | Path) -> dict[str, Any]:
    """Hyperparameters from a user YAML (a flat mapping, or one with a ``set`` key)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"editor_config={str(path)!r} does not exist.")
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"editor_config {path} must be a mapping of hyperparameters.")
    return dict(data.get("set", data))


def as_dict(config: Any) -> dict[str, Any]:
    """The resolved configuration as plain data (for manifests and results)."""
    return dataclasses.asdict(config)
