"""Apply a sequence of edit requests in batches, keeping every step's undo record."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from lm_edit.core.anatomy import ModelAnatomy, resolve_anatomy
from lm_edit.core.placement import require_weights_in_memory
from lm_edit.core.record import EditRecord
from lm_edit.data.requests import EditRequest
from lm_edit.editors.registry import EditorSpec, create_editor, resolve_editor

logger = logging.getLogger(__name__)


@dataclass
class EditStream:
    """Edits applied to one model in order; owns the editor instance and its state.

    ``apply`` may be called repeatedly: later batches continue the same stream (the
    editor keeps its templates, statistics and any accumulated state).
    """

    model: Any
    tokenizer: Any
    spec: EditorSpec
    anatomy: ModelAnatomy
    seed: int = 0
    records: list[EditRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.editor = create_editor(self.spec, self.anatomy, self.seed)

    @classmethod
    def create(
        cls,
        model,
        tokenizer,
        editor: str = "rome",
        *,
        seed: int = 0,
        editor_config: str | None = None,
        anatomy_overrides: dict[str, Any] | None = None,
        **hyperparameters: Any,
    ) -> EditStream:
        """Resolve the editor's configuration for ``model`` and open a stream."""
        spec = resolve_editor(editor, model, hyperparameters, editor_config)
        anatomy = resolve_anatomy(model, anatomy_overrides)
        logger.info(
            "Editor %s (%s defaults) on %s",
            editor,
            spec.family or "generic rule",
            model.config.model_type,
        )
        return cls(model, tokenizer, spec, anatomy, seed)

    def apply(
        self,
        requests: list[EditRequest],
        batch_size: int = 1,
        progress: bool = True,
        after_batch: Callable[[EditRecord], None] | None = None,
    ) -> list[EditRecord]:
        """Apply ``requests`` in consecutive batches of ``batch_size``."""
        if batch_size < 1:
            raise ValueError(f"edit_batch_size must be >= 1, got {batch_size}.")
        if not requests:
            raise ValueError("No edit requests to apply.")
        batches = [requests[i : i + batch_size] for i in range(0, len(requests), batch_size)]
        require_weights_in_memory(self.model)
        self.editor.prepare(self.model, self.tokenizer)
        new_records = []
        for batch in tqdm(
            batches, desc=f"editing ({self.spec.name})", unit="batch", disable=not progress
        ):
            record = self.editor.apply(self.model, self.tokenizer, batch)
            self.records.append(record)
            new_records.append(record)
            if after_batch is not None:
                after_batch(record)
        return new_records

    def undo(self) -> None:
        """Restore the model to its state before the first edit of this stream."""
        for record in reversed(self.records):
            self.editor.undo(self.model, record)
        self.records.clear()
        self.editor.reset()

    @property
    def edited_case_ids(self) -> list[str]:
        return [case for record in self.records for case in record.case_ids]
