"""MQuAKE: multi-hop questions whose answers must change after the edits.

One MQuAKE case (``requested_rewrite`` list, ``questions``, ``answer``/``answer_alias``,
``new_answer``/``new_answer_alias``; the format of princeton-nlp/MQuAKE's
``MQuAKE-CF-3k.json``) carries several rewrites. :func:`mquake_requests` turns each
rewrite into an :class:`EditRequest` (``case_id`` ``<case>/<hop>``) that remembers its
case (``extra["group"]``, ``extra["mquake"]``), so a case is edited whole and the
``mquake`` task scores a case only once all its rewrites are applied.

The ``mquake`` task (:mod:`lm_edit.evaluation.mquake_task`) asks its questions.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from lm_edit.data.records import Format
from lm_edit.data.requests import EditRequest, EditRequestError

logger = logging.getLogger(__name__)


def _text(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EditRequestError(
            f"{where}: field '{name}' must be a non-empty string, got {value!r}."
        )
    return value.strip()


def _texts(value: Any, name: str, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EditRequestError(f"{where}: field '{name}' must be a list of strings.")
    return [_text(v, f"{name}[{i}]", where) for i, v in enumerate(value)]


def _label(value: Any, name: str, where: str) -> str:
    if not isinstance(value, Mapping):
        raise EditRequestError(f"{where}: field '{name}' must be an object with 'str'.")
    return _text(value.get("str"), f"{name}.str", where)


def _case_info(data: Mapping[str, Any], case: str, where: str) -> dict[str, Any]:
    questions = _texts(data.get("questions"), "questions", where)
    if not questions:
        raise EditRequestError(f"{where}: field 'questions' is missing or empty.")
    return {
        "case_id": case,
        "questions": questions,
        "new_answer": _text(data.get("new_answer"), "new_answer", where),
        "new_answer_alias": _texts(data.get("new_answer_alias"), "new_answer_alias", where),
        "answer": _text(data.get("answer"), "answer", where),
        "answer_alias": _texts(data.get("answer_alias"), "answer_alias", where),
    }


def mquake_requests(data: Any, where: str, default_id: str) -> list[EditRequest]:
    """The edit requests of one MQuAKE record (one per rewrite); errors name the record."""
    if not isinstance(data, Mapping):
        raise EditRequestError(f"{where}: a record must be a JSON object, got {data!r}.")
    case = str(data.get("case_id", default_id))
    rewrites = data.get("requested_rewrite")
    if not isinstance(rewrites, list) or not rewrites:
        raise EditRequestError(f"{where}: 'requested_rewrite' must be a non-empty list.")
    info = _case_info(data, case, where) | {"n_rewrites": len(rewrites)}
    requests = []
    for hop, rewrite in enumerate(rewrites):
        at = f"{where}, requested_rewrite[{hop}]"
        if not isinstance(rewrite, Mapping):
            raise EditRequestError(f"{at}: a rewrite must be a JSON object.")
        template = _text(rewrite.get("prompt"), "prompt", at)
        if template.count("{}") != 1:
            raise EditRequestError(f"{at}: 'prompt' must contain '{{}}' once, got {template!r}.")
        subject = _text(rewrite.get("subject"), "subject", at)
        question = rewrite.get("question")
        requests.append(
            EditRequest(
                case_id=f"{case}/{hop}",
                prompt=template.replace("{}", subject),
                subject=subject,
                target_new=_label(rewrite.get("target_new"), "target_new", at),
                target_true=_label(rewrite.get("target_true"), "target_true", at),
                rephrases=(_text(question, "question", at),) if question is not None else (),
                source=at,
                extra={"format": "mquake", "group": case, "mquake": info},
            )
        )
    return requests


def complete_cases(requests: list[EditRequest]) -> list[dict[str, Any]]:
    """The MQuAKE cases all of whose rewrites are among ``requests`` (in first-seen order);
    partly edited cases are logged and left out."""
    seen: dict[str, dict[str, Any]] = {}
    count: dict[str, int] = defaultdict(int)
    for request in requests:
        info = request.extra.get("mquake")
        if info is None:
            continue
        seen.setdefault(info["case_id"], info)
        count[info["case_id"]] += 1
    partial = [case for case, info in seen.items() if count[case] < info["n_rewrites"]]
    if partial:
        logger.warning(
            "mquake: %d case(s) only partly edited, not scored: %s", len(partial), partial
        )
    return [info for case, info in seen.items() if case not in partial]


MQUAKE = Format("mquake", "MQuAKE", frozenset(), expand=mquake_requests)
