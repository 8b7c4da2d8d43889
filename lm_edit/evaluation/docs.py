"""Docs of the editing tasks: which probes a task scores, and how they become lm-eval docs.

A *view* names the probes a task keeps (``zsre_portability`` keeps the one-hop
portability probes, ``knowedit_zsre`` keeps everything and breaks locality and
portability down by KnowEdit category...) and the data it reads when no edit session is
open (under ``--model hf``). Each view has a teacher-forced task (``output_type``
``multiple_choice``, scored token by token, see :mod:`lm_edit.evaluation.teacher_forcing`) and a
generation task (``generate_until``) built from the same probes.

The cases are always those of the open edit session (what ``edited-hf`` edited) or,
without one, the cases ``--metadata`` names (``edit_data``, ``n_edits``, ``edit_seed``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from lm_edit.data.loading import load_edit_requests, select_requests
from lm_edit.data.requests import EditRequest
from lm_edit.evaluation.probes import (
    ARGMAX,
    KINDS,
    UNEDITED,
    ProbeItem,
    case_probes,
    category_slug,
)
from lm_edit.evaluation.session import EditSession, active_session
from lm_edit.evaluation.teacher_forcing import forced_steps

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class View:
    """Which probes a task scores. ``categories`` (when set) keeps only locality and
    portability probes of those dataset categories; ``breakdown`` adds per-category
    metrics; ``default_data`` is read when no edit session is open; ``true_object`` marks
    views whose metrics (CounterFact's ES/PS) compare the new object with the true one."""

    kinds: tuple[str, ...] = KINDS
    categories: tuple[str, ...] | None = None
    breakdown: bool = False
    default_data: str = "demo"
    true_object: bool = False


KNOWEDIT_CATEGORIES = (
    "Reasoning",
    "Subject_Aliasing",
    "Logical_Generalization",
    "Relation_Specificity",
    "Forgetfulness",
)
VIEWS: dict[str, View] = {
    "zsre_edit": View(default_data="demo"),
    "counterfact_edit": View(default_data="demo", true_object=True),
    "zsre_portability": View(("portability",), ("one_hop",), default_data="zsre"),
    "counterfact_portability": View(("portability",), ("one_hop",), default_data="counterfact"),
    "zsre_subject_replace": View(("portability",), ("subject_replace",), default_data="zsre"),
    "counterfact_subject_replace": View(
        ("portability",), ("subject_replace",), default_data="counterfact"
    ),
    "zsre_inverse_relation": View(("portability",), ("inverse_relation",), default_data="zsre"),
    "knowedit_zsre": View(breakdown=True, default_data="knowedit"),
    "knowedit_wiki_counterfact": View(breakdown=True, default_data="knowedit_wiki_counterfact"),
    "knowedit_wiki_recent": View(breakdown=True, default_data="knowedit_wiki_recent"),
    "knowedit_wikibio": View(breakdown=True, default_data="knowedit_wikibio"),
}


NO_PROBES = "none"


def resolve_view(name: str) -> View:
    """The view called ``name``; the error lists the known ones."""
    try:
        return VIEWS[name]
    except KeyError:
        raise ValueError(f"Unknown editing view {name!r}; known views: {sorted(VIEWS)}.") from None


def scored_cases(requests: list[EditRequest], score_cases: Any) -> list[EditRequest]:
    """The cases an editing task scores: all of them, or with ``--metadata
    '{"score_cases": N}'`` the first ``N`` in edit order (under ``edited-hf`` the model
    argument ``score_cases=N`` does this, and spares the unedited baselines of the rest)."""
    if score_cases is None:
        return requests
    whole = isinstance(score_cases, (int, float)) and float(score_cases).is_integer()
    if isinstance(score_cases, bool) or not whole or score_cases < 1:
        raise ValueError(
            f"score_cases={score_cases!r}: give a whole number of cases >= 1 (the model "
            "argument score_cases=500, or --metadata '{\"score_cases\": 500}')"
        )
    return requests[: int(score_cases)]


def session_or_metadata_requests(
    metadata: dict[str, Any], default_data: str = "demo"
) -> tuple[list[EditRequest], EditSession | None]:
    """The edited cases of the open session (its planned cases before the first edit), or
    (under a model that does not edit) the cases named by ``--metadata`` (``edit_data``,
    ``n_edits``, ``edit_seed``); either cut to ``score_cases`` when given."""
    session = active_session()
    if session is not None:
        cases = session.scored(session.requests or session.planned)
        return scored_cases(cases, metadata.get("score_cases")), session
    n_edits = metadata.get("n_edits", 10)
    requests = load_edit_requests(
        str(metadata.get("edit_data", default_data)), split=metadata.get("edit_split")
    )
    chosen = select_requests(
        requests,
        None if n_edits in (None, "all") else int(n_edits),
        int(metadata.get("edit_seed", 0)),
    )
    return scored_cases(chosen, metadata.get("score_cases")), None


def _kept(item: ProbeItem, view: View) -> bool:
    if item.kind not in view.kinds:
        return False
    if view.categories is None or item.kind not in ("locality", "portability"):
        return True
    return item.category in view.categories


def _report_missing(view_name: str, view: View, missing: dict[str, list[str]], total: int):
    """Log, per probe kind, the cases that have none of it (they are left out of that
    kind's metrics, never scored as zero)."""
    for kind, cases in missing.items():
        if not cases:
            continue
        wanted = f"{kind} probes" + (
            f" of category {'/'.join(view.categories)}"
            if view.categories and kind in ("locality", "portability")
            else ""
        )
        if len(cases) == total and len(missing) == 1:
            logger.warning(
                "%s: none of the %d edited cases has %s; this task reports no metrics. Edit "
                "cases from data that has them (for example edit_data=%s).",
                view_name,
                total,
                wanted,
                view.default_data,
            )
            continue
        logger.warning(
            "%s: %d of %d cases have no %s; %s metrics leave them out: %s",
            view_name,
            len(cases),
            total,
            wanted,
            kind,
            ", ".join(cases[:10]) + (" ..." if len(cases) > 10 else ""),
        )


def view_probes(
    view_name: str, requests: list[EditRequest], session: EditSession | None
) -> list[ProbeItem]:
    """The probes ``view_name`` scores. Cases without a kind of probe are logged and
    left out of that kind's metrics, never scored as zero (with no probe at all the task
    reports no metrics)."""
    view = resolve_view(view_name)
    unedited = session.unedited_answers if session is not None else None
    items: list[ProbeItem] = []
    missing: dict[str, list[str]] = {kind: [] for kind in view.kinds}
    for request in requests:
        kept = [item for item in case_probes(request, unedited) if _kept(item, view)]
        items += kept
        for kind in view.kinds:
            if not any(item.kind == kind for item in kept):
                missing[kind].append(request.case_id)
    _report_missing(view_name, view, missing, len(requests))
    return items


def _report_no_true_object(view_name: str, requests: list[EditRequest]) -> None:
    """Log the cases without a true object: ES/PS (and S) leave them out."""
    cases = [request.case_id for request in requests if not request.target_true]
    if cases:
        logger.warning(
            "%s: %d of %d cases have no true object (target_true); ES/PS/EM/PM and S "
            "leave them out, the other metrics score them: %s",
            view_name,
            len(cases),
            len(requests),
            ", ".join(cases[:10]) + (" ..." if len(cases) > 10 else ""),
        )


def _individual(session: EditSession | None, item: ProbeItem) -> str:
    scores = session.individual.get(item.case_id, {}).get(item.key, {}) if session else {}
    return json.dumps(scores, sort_keys=True)


def _base_doc(view_name: str, item: ProbeItem, session: EditSession | None) -> dict[str, Any]:
    view = resolve_view(view_name)
    return {
        "case_id": item.case_id,
        "probe": item.kind,
        "probe_index": item.index,
        "category": item.category,
        "breakdown": category_slug(item.category) if view.breakdown else "",
        "prompt": item.prompt,
        "individual": _individual(session, item),
    }


def forced_doc(
    view_name: str, item: ProbeItem, tokenizer, session: EditSession | None = None
) -> dict[str, Any]:
    """A teacher-forced doc: one loglikelihood request per answer token of every slot.

    Dataset answers are forced after one space; the unedited model's answer is forced
    exactly as it generated it (``"?"`` stays ``"?"``, not ``" ?"``). An unedited answer
    without tokens of its own (empty, or merging into the prompt's last token) is left
    out (logged).
    """
    requests, step_slots, step_tokens = [], [], []
    for slot, answers in item.targets.items():
        if not answers[0].strip():
            continue
        answer = answers[0] if slot == UNEDITED else " " + answers[0].strip()
        try:
            steps = forced_steps(tokenizer, item.prompt, answer)
        except ValueError:
            if slot != UNEDITED:
                raise
            logger.warning(
                "case %s: the unedited answer %r merges into the prompt's last token; its "
                "teacher-forced locality is not scored",
                item.case_id,
                answer,
            )
            continue
        for step in steps:
            requests.append([step.context, step.continuation])
            step_slots.append(slot)
            step_tokens.append(step.tokens)
    if item.kind == "locality" and session is not None:
        for context, token in session.unedited_argmax.get((item.case_id, item.index), []):
            requests.append([context, token])
            step_slots.append(ARGMAX)
            step_tokens.append(1)
    return {
        **_base_doc(view_name, item, session),
        "requests": requests,
        "step_slots": step_slots,
        "step_tokens": step_tokens,
    }


def generation_doc(
    view_name: str, item: ProbeItem, session: EditSession | None = None
) -> dict[str, Any]:
    """A generation doc: the prompt, continued greedily, judged against every slot."""
    targets = {slot: list(answers) for slot, answers in item.targets.items()}
    return {**_base_doc(view_name, item, session), "targets": json.dumps(targets)}


def load_tokenizer(metadata: dict[str, Any], session: EditSession | None):
    """The tokenizer that splits answers into tokens: the edited model's, or (without a
    session) the one ``pretrained=`` / ``tokenizer=`` in the model arguments names."""
    if session is not None and session.tokenizer is not None:
        return session.tokenizer
    name = metadata.get("tokenizer") or metadata.get("pretrained")
    if not name:
        raise ValueError(
            "The teacher-forced editing tasks split answers into the model's tokens and need "
            "its tokenizer: run them under --model edited-hf, or pass pretrained=... (or "
            "tokenizer=...) in --model_args / --metadata."
        )
    from transformers import AutoTokenizer

    from lm_edit.offline_model import resolve_pretrained

    return AutoTokenizer.from_pretrained(resolve_pretrained(name))


def placeholder_doc(forced: bool) -> dict[str, Any]:
    """The one doc of a task with no probes to score (lm-eval fails on a task without
    docs); the metric functions report nothing for it."""
    doc = {"case_id": "", "probe": NO_PROBES, "prompt": "", "individual": "{}"}
    if forced:
        return doc | {"requests": [["", " "]], "step_slots": [""], "step_tokens": [1]}
    return doc | {"targets": "{}"}


def as_dataset(docs: list[dict[str, Any]]):
    """The ``DatasetDict`` (one ``test`` split) a ``custom_dataset`` function returns."""
    from datasets import Dataset, DatasetDict

    return DatasetDict({"test": Dataset.from_list(docs)})


def build_forced_docs(view: str, **metadata: Any):
    """``custom_dataset`` of a teacher-forced editing task (``dataset_kwargs: {view: ...}``)."""
    requests, session = session_or_metadata_requests(metadata, resolve_view(view).default_data)
    tokenizer = load_tokenizer(metadata, session)
    items = view_probes(view, requests, session)
    if resolve_view(view).true_object:
        _report_no_true_object(view, requests)
    docs = [forced_doc(view, item, tokenizer, session) for item in items]
    return as_dataset(docs or [placeholder_doc(forced=True)])


def build_generation_docs(view: str, **metadata: Any):
    """``custom_dataset`` of a generation editing task (``dataset_kwargs: {view: ...}``)."""
    requests, session = session_or_metadata_requests(metadata, resolve_view(view).default_data)
    items = view_probes(view, requests, session)
    docs = [generation_doc(view, item, session) for item in items]
    return as_dataset(docs or [placeholder_doc(forced=False)])
