"""The ``mquake`` task: multi-hop questions whose answers must change after the edits.

Every question of a fully edited MQuAKE case (:mod:`lm_edit.data.formats.mquake`) is asked
as ``Q: <question>\\nA:`` and answered greedily; ``multihop_new_gen`` / ``_contains`` judge
the answer against the new answer and its aliases (:mod:`lm_edit.evaluation.answers`),
``multihop_orig_gen_contains`` against the pre-edit answer, and
``multihop_case_new_gen_contains`` counts a case as solved when any of its questions is
(MQuAKE's multi-hop accuracy).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from lm_edit.data.formats.mquake import complete_cases
from lm_edit.data.requests import EditRequest
from lm_edit.evaluation.answers import contains, exact_match
from lm_edit.evaluation.docs import as_dataset, session_or_metadata_requests

logger = logging.getLogger(__name__)

QUESTION_TEMPLATE = "Q: {question}\nA:"


def mquake_docs(requests: list[EditRequest]) -> list[dict[str, Any]]:
    """One doc per question of every fully edited case."""
    return [
        {
            "case_id": info["case_id"],
            "prompt": QUESTION_TEMPLATE.format(question=question),
            "new_answers": [info["new_answer"], *info["new_answer_alias"]],
            "old_answers": [info["answer"], *info["answer_alias"]],
        }
        for info in complete_cases(requests)
        for question in info["questions"]
    ]


def build_mquake_docs(**metadata: Any):
    """``custom_dataset`` of the ``mquake`` task."""
    requests, _ = session_or_metadata_requests(metadata, "mquake")
    docs = mquake_docs(requests)
    if not docs:
        logger.warning(
            "mquake: no fully edited MQuAKE case, this task reports no metrics. Edit MQuAKE "
            "data (edit_data=mquake or an MQuAKE-format file) with n_edits covering whole cases."
        )
        docs = [{"case_id": "", "prompt": "", "new_answers": [], "old_answers": []}]
    return as_dataset(docs)


def mquake_metrics(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Per-question metrics; the case-level one is aggregated by :func:`any_per_case`.
    The placeholder doc of a run without MQuAKE cases reports nothing."""
    if not doc["case_id"]:
        return {}
    answer = results[0]
    solved = contains(answer, doc["new_answers"])
    return {
        "multihop_new_gen": exact_match(answer, doc["new_answers"]),
        "multihop_new_gen_contains": solved,
        "multihop_orig_gen_contains": contains(answer, doc["old_answers"]),
        "multihop_case_new_gen_contains": (doc["case_id"], solved),
    }


def any_per_case(items: list[tuple[str, float]]) -> float:
    """Share of cases with at least one question answered with the new answer."""
    best: dict[str, float] = defaultdict(float)
    for case, solved in items:
        best[case] = max(best[case], solved)
    return sum(best.values()) / len(best) if best else 0.0
