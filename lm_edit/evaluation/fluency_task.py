"""The ``counterfact_fluency`` task: free generations of the edited cases, scored by
generation entropy and (with ROME's reference data) reference score.

Prompts per case: ROME-format ``generation_prompts`` when the data has them, else the
edit prompt and its rephrases; at most ``fluency_prompts`` of them (default 1; ROME uses
all ten of its generation prompts, too slow on a CPU); set it with ``--metadata``.
"""

from __future__ import annotations

import logging
from typing import Any

from lm_edit.data.requests import EditRequest
from lm_edit.evaluation.docs import as_dataset, session_or_metadata_requests
from lm_edit.evaluation.fluency import generation_entropy, load_reference, reference_folder

logger = logging.getLogger(__name__)


def generation_prompts(request: EditRequest, limit: int) -> list[str]:
    """The free-generation prompts of one case."""
    prompts = request.extra.get("generation_prompts") or [request.prompt, *request.rephrases]
    return [str(p) for p in prompts][:limit]


def _snippet_key(request: EditRequest) -> str:
    relation, target = request.extra.get("relation_id"), request.extra.get("target_new_id")
    return f"{relation}|{target}" if relation and target else ""


def fluency_docs(requests: list[EditRequest], metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """One doc per generation prompt; RS fields filled when reference data is given."""
    folder = reference_folder(metadata)
    if folder is None:
        logger.warning(
            "counterfact_fluency: reference score (RS) skipped: no reference data. Pass "
            '--metadata \'{"reference_data": "<dir>"}\' or set $LM_EDIT_REFERENCE_DATA '
            "to a folder with ROME's attribute_snippets.json, tfidf_vocab.json and idf.npy."
        )
    else:
        load_reference(folder)
    limit = int(metadata.get("fluency_prompts", 1))
    docs, keyless = [], []
    for request in requests:
        key = _snippet_key(request) if folder else ""
        if folder and not key:
            keyless.append(request.case_id)
        docs += [
            {
                "case_id": request.case_id,
                "prompt": prompt,
                "reference_data": folder or "",
                "snippet_key": key,
            }
            for prompt in generation_prompts(request, limit)
        ]
    if keyless:
        logger.warning(
            "counterfact_fluency: RS skipped for %d case(s) without relation_id and "
            "target_new id (ROME-format data has them): %s",
            len(keyless),
            keyless[:10],
        )
    return docs


def build_fluency_docs(**metadata: Any):
    """``custom_dataset`` of ``counterfact_fluency``."""
    requests, _ = session_or_metadata_requests(metadata, "counterfact")
    return as_dataset(fluency_docs(requests, metadata))


def fluency_metrics(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """GE item per generation, and an RS item when the case has reference snippets."""
    text = results[0]
    out: dict[str, Any] = {"ge": (doc["case_id"], generation_entropy(text))}
    if doc["snippet_key"]:
        out["rs"] = (doc["case_id"], text, doc["reference_data"], doc["snippet_key"])
    return out
