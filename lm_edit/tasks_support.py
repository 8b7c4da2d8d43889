"""Docs and metrics of the editing tasks (``zsre_edit``, ``counterfact_edit``).

Every doc is one probe of one edited case, scored through stock ``loglikelihood``
requests (``output_type: multiple_choice`` with per-doc choices), so the tasks run under
``edited-hf`` and under plain ``hf`` alike. Metric names carry their protocol:

* ``*_tf_em``: teacher-forced exact match: with the answer fed in, every answer token is
  the model's argmax (lm-eval's ``is_greedy``). ``locality_tf_em_unedited`` uses the
  unedited model's own greedy answer, ``locality_tf_em_gold`` the dataset's answer.
* ``*_prob``: probability comparison: P(a) > P(b), P the product of the answer's token
  probabilities (sum of log-probs, answer preceded by a space). ES/PS compare the new
  object with the true one on the edit and rephrased prompts, NS the true (neighbourhood)
  answer with the new object on the neighbourhood prompts; EM/PM/NM are the mean
  differences P(a) - P(b); S is the harmonic mean of ES, PS and NS.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from lm_edit.datasets import load_edit_requests, select_requests
from lm_edit.requests import EditRequest
from lm_edit.session import EditSession, active_session

NEW, TRUE, GOLD, UNEDITED = "new", "true", "gold", "unedited"


def _answer(text: str) -> str:
    return " " + text.strip()


def _doc(request: EditRequest, probe: str, index: int, prompt: str, slots: dict[str, str]) -> dict:
    return {
        "case_id": request.case_id,
        "probe": probe,
        "probe_index": index,
        "prompt": prompt,
        "slots": list(slots),
        "choices": list(slots.values()),
    }


def case_docs(request: EditRequest, unedited: dict[tuple[str, int], str] | None) -> list[dict]:
    """All probe docs of one case: reliability, generality, locality, portability."""
    pair = {NEW: _answer(request.target_new)}
    if request.target_true:
        pair[TRUE] = _answer(request.target_true)
    docs = [_doc(request, "reliability", 0, request.prompt, pair)]
    docs += [_doc(request, "generality", i, p, pair) for i, p in enumerate(request.rephrases)]
    for i, probe in enumerate(request.locality):
        slots = {GOLD: _answer(probe.answer), NEW: _answer(request.target_new)}
        if unedited is not None and (request.case_id, i) in unedited:
            slots[UNEDITED] = unedited[(request.case_id, i)]
        docs.append(_doc(request, "locality", i, probe.prompt, slots))
    for i, probe in enumerate(request.portability):
        docs.append(_doc(request, "portability", i, probe.prompt, {GOLD: _answer(probe.answer)}))
    return docs


def session_or_metadata_requests(
    metadata: dict[str, Any],
) -> tuple[list[EditRequest], EditSession | None]:
    """The edited cases of the open session (its planned cases before the first edit), or
    (under a model that does not edit) the cases named by ``--metadata`` (``edit_data``,
    ``n_edits``, ``edit_seed``)."""
    session = active_session()
    if session is not None:
        return session.requests or session.planned, session
    n_edits = metadata.get("n_edits", 10)
    requests = load_edit_requests(
        str(metadata.get("edit_data", "demo")), split=metadata.get("edit_split")
    )
    chosen = select_requests(
        requests,
        None if n_edits in (None, "all") else int(n_edits),
        int(metadata.get("edit_seed", 0)),
    )
    return chosen, None


def build_docs(**metadata: Any):
    """``custom_dataset`` for the editing tasks: a ``DatasetDict`` with a ``test`` split."""
    from datasets import Dataset, DatasetDict

    requests, session = session_or_metadata_requests(metadata)
    unedited = session.unedited_answers if session is not None else None
    docs = [doc for request in requests for doc in case_docs(request, unedited)]
    if not docs:
        raise ValueError("The editing task has no cases to score (the edit set is empty).")
    return DatasetDict({"test": Dataset.from_list(docs)})


def _scores(doc: dict, results: list[tuple[float, bool]]) -> dict[str, tuple[float, bool]]:
    return dict(zip(doc["slots"], results, strict=True))


def _prob_gap(first: tuple[float, bool], second: tuple[float, bool]) -> tuple[float, float]:
    return float(first[0] > second[0]), math.exp(first[0]) - math.exp(second[0])


def zsre_metrics(doc: dict, results: list[tuple[float, bool]]) -> dict[str, float]:
    """Per-doc metrics of ``zsre_edit``."""
    got = _scores(doc, results)
    probe = doc["probe"]
    if probe in ("reliability", "generality"):
        out = {f"{probe}_tf_em": float(got[NEW][1])}
        if TRUE in got:
            out[f"{probe}_prob"] = _prob_gap(got[NEW], got[TRUE])[0]
        return out
    if probe == "locality":
        out = {"locality_tf_em_gold": float(got[GOLD][1])}
        if UNEDITED in got:
            out["locality_tf_em_unedited"] = float(got[UNEDITED][1])
        return out
    return {"portability_tf_em": float(got[GOLD][1])}


def counterfact_metrics(doc: dict, results: list[tuple[float, bool]]) -> dict[str, Any]:
    """Per-doc metrics of ``counterfact_edit`` (see the module docstring)."""
    got = _scores(doc, results)
    probe = doc["probe"]
    if probe in ("reliability", "generality"):
        if TRUE not in got:
            raise ValueError(
                f"Case {doc['case_id']!r} has no target_true: CounterFact's ES/PS need the true "
                "object. Use zsre_edit for insertion-style data."
            )
        success, gap = _prob_gap(got[NEW], got[TRUE])
        short = "es" if probe == "reliability" else "ps"
        return {
            f"{short}_prob": success,
            f"{short[0]}m_prob": gap,
            f"{probe}_tf_em": float(got[NEW][1]),
            "s_prob": (short, success),
        }
    if probe == "locality":
        success, gap = _prob_gap(got[GOLD], got[NEW])
        return {"ns_prob": success, "nm_prob": gap, "s_prob": ("ns", success)}
    return {}


def harmonic_score(items: list[tuple[str, float]]) -> float:
    """S: harmonic mean of the mean ES, PS and NS (0 when any of them is 0)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for name, value in items:
        groups[name].append(value)
    means = [sum(v) / len(v) for v in groups.values()]
    if not means or min(means) == 0:
        return 0.0
    return len(means) / sum(1 / m for m in means)
