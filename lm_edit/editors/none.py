"""``editor=none``: changes nothing, so editing tasks score the same cases unedited."""

from __future__ import annotations

from dataclasses import dataclass

from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import EditRecord, recording


@dataclass(frozen=True)
class NoOpConfig:
    """The no-op editor has no hyperparameters."""


class NoOpEditor:
    """Records the requests and leaves the model untouched."""

    name = "none"

    def __init__(self, config: NoOpConfig, **_: object) -> None:
        self.config = config

    def apply(self, model, tokenizer, requests: list[EditRequest]) -> EditRecord:
        with recording(model, self.name, requests) as record:
            pass
        return record
