"""Editors: the lifecycle every paradigm fits (:mod:`.base`), their configuration from
``editors/<name>.yaml`` (:mod:`.config`), the registry (:mod:`.registry`) and one module
or folder per implementation (:mod:`.none`, :mod:`.locate`, :mod:`.finetune`,
:mod:`.codebook`, :mod:`.added_neurons`, ...), and the layer choice they share
(:mod:`.layers`)."""

from lm_edit.core.record import EditRecord
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.config import UnknownEditorError, known_editors
from lm_edit.editors.registry import (
    EditorSpec,
    all_hyperparameter_names,
    create_editor,
    hyperparameter_names,
    implementations,
    resolve_editor,
)

__all__ = [
    "EditRecord",
    "Editor",
    "EditorConfig",
    "EditorSpec",
    "all_hyperparameter_names",
    "UnknownEditorError",
    "create_editor",
    "hyperparameter_names",
    "implementations",
    "known_editors",
    "register_editor",
    "resolve_editor",
]
