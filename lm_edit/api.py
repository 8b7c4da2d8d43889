"""The Python entry point: ``lm_edit.edit(model, tokenizer, requests, editor="rome")``."""

from __future__ import annotations

from typing import Any

from lm_edit.core.record import EditRecord
from lm_edit.data.requests import EditRequest
from lm_edit.stream import EditStream


def edit(
    model,
    tokenizer,
    requests: list[EditRequest] | EditRequest,
    editor: str = "rome",
    *,
    batch_size: int | None = None,
    seed: int = 0,
    **config: Any,
) -> EditRecord:
    """Edit ``model`` in place and return one record whose ``undo(model)`` restores it.

    ``batch_size`` defaults to 1 (sequential edits); ``config`` overrides the editor's
    hyperparameters (for example ``layers=[5]``).
    """
    items = [requests] if isinstance(requests, EditRequest) else list(requests)
    stream = EditStream.create(model, tokenizer, editor, seed=seed, **config)
    records = stream.apply(items, batch_size=batch_size or 1, progress=False)
    return merge_records(records)


def merge_records(records: list[EditRecord]) -> EditRecord:
    """One record equivalent to a sequence: its undo takes back every step, newest first."""
    merged = EditRecord(editor=records[0].editor, case_ids=[])
    for record in records:
        merged.case_ids += record.case_ids
        merged.seconds += record.seconds
        merged.actions += record.actions
        merged.peak_memory_bytes = (
            max(merged.peak_memory_bytes or 0, record.peak_memory_bytes or 0) or None
        )
    merged.details["steps"] = [r.summary() for r in records]
    return merged
