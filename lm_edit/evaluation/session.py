"""The edit session: which cases the model edited and what the unedited model answered.

``edited-hf`` opens a session after loading the model and before editing; the editing
tasks (``zsre_edit``, ``counterfact_edit``) read it to score exactly the edited cases.
One process evaluates one model at a time in lm-eval, so the open session is kept per
process; :func:`close_session` ends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lm_edit.data.requests import EditRequest


@dataclass
class EditSession:
    """Edited cases (in edit order), the unedited model's locality answers, and provenance.

    ``unedited_answers`` maps ``(case_id, locality index)`` to the unedited model's greedy
    continuation of that locality prompt; ``unedited_argmax`` to its ``[context, argmax
    token]`` pairs along the gold answer (:mod:`lm_edit.evaluation.argmax_locality`).
    ``individual`` holds each case's scores taken
    right after its own edit batch (``case_id -> "kind/index" -> metric -> value``, see
    :mod:`lm_edit.evaluation.individual`); the tasks report them beside the scores after all edits.
    ``tokenizer`` is the edited model's (the teacher-forced tasks split answers with it).
    ``planned`` lists the cases the model will edit; while none is applied yet, the
    editing tasks score those on the unedited model. With ``score_cases`` the tasks score,
    and the unedited answers and individual scores cover, only the first cases in edit
    order.
    """

    requests: list[EditRequest]
    editor: str
    edit_data: str
    data_source: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    unedited_answers: dict[tuple[str, int], str] = field(default_factory=dict)
    unedited_argmax: dict[tuple[str, int], list[list[str]]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    individual: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    tokenizer: Any = None
    planned: list[EditRequest] = field(default_factory=list)
    weights_digest: str | None = None  # data-parallel runs: the digest all ranks agreed on
    score_cases: int | None = None  # the editing tasks score only this many, first edited

    def scored(self, requests: list[EditRequest]) -> list[EditRequest]:
        """Of ``requests`` (in edit order), those the editing tasks score."""
        return requests if self.score_cases is None else requests[: self.score_cases]

    def manifest(self) -> dict[str, Any]:
        """JSON-friendly provenance: editor, config, case ids in order, per-step timings."""
        return {
            "editor": self.editor,
            "edit_data": self.edit_data,
            "data_source": self.data_source,
            "config": self.config,
            "case_ids": [r.case_id for r in self.requests],
            "steps": self.records,
            "weights_digest": self.weights_digest,
        }


_open: list[EditSession] = []


def open_session(session: EditSession) -> None:
    """Make ``session`` the one tasks read (replacing any earlier one)."""
    _open.clear()
    _open.append(session)


def active_session() -> EditSession | None:
    """The open session, or None under a model that did not edit (for example ``hf``)."""
    return _open[0] if _open else None


def close_session() -> None:
    """Forget the open session."""
    _open.clear()
