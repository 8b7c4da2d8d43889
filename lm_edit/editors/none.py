"""``editor=none``: changes nothing, so editing tasks score the same cases unedited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from lm_edit.core.record import EditRecord
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor


@dataclass(frozen=True)
class NoOpConfig(EditorConfig):
    """The no-op editor has no hyperparameters."""


@register_editor("none")
class NoOpEditor(Editor):
    """Records the requests and leaves the model untouched."""

    config_class = NoOpConfig
    changes_outputs = False

    def edit(
        self, model: nn.Module, tokenizer: Any, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Nothing to change."""
