"""Edit-data formats, one module each, and the rule that picks one from a record.

Formats (detection rules, checked in this order on the first record's keys):

* KnowEdit WikiBio (``text``, ``labels``, ``concept``): hallucination correction; the passage
  ``text`` is the prompt, ``concept`` (the person, named in the passage) the subject and
  the corrected sentence ``labels`` the target; locality from ``locality``.
* MQuAKE (``requested_rewrite`` is a list): one request per rewrite, each remembering its
  case (see :mod:`lm_edit.data.formats.mquake`); ``select_requests`` keeps a case's
  rewrites together.
* CounterFact, ROME format (``requested_rewrite`` is an object).
* ZsRE, MEND format (``src`` and ``alt``); locality prompts keep MEND's ``nq question:`` prefix.
* KnowEdit (``prompt``, ``subject``, ``target_new`` and a ``locality``/``portability`` object).
* EasyEdit flat format (``prompt``, ``subject``, ``target_new`` and any of ``ground_truth``,
  ``rephrase_prompt``, ``locality_prompt``, ...): labelled ZsRE when the locality prompt starts
  with ``nq question:``, else CounterFact.
* Our own schema (``prompt``, ``subject``, ``target_new``; like ``EditRequest.to_dict``).

Normalisation: text is stripped of surrounding whitespace; ground truths may be strings or
(nested) lists, whose first string is the answer and the rest its aliases. A probe without any
answer and an empty ground truth are left out and logged as a warning. Keys a format does not
map are kept in ``EditRequest.extra``, with ``extra["format"]`` naming the detected format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lm_edit.data.formats.counterfact import COUNTERFACT_ROME
from lm_edit.data.formats.easyedit import COUNTERFACT_FLAT, FLAT_KEYS, ZSRE_FLAT
from lm_edit.data.formats.knowedit import KNOWEDIT, WIKIBIO
from lm_edit.data.formats.mquake import MQUAKE
from lm_edit.data.formats.own import OWN
from lm_edit.data.formats.zsre import ZSRE_MEND
from lm_edit.data.records import Format
from lm_edit.data.requests import EditRequestError

FORMAT_SUMMARY = (
    "ZsRE MEND format (src, alt, answers, rephrase, loc, loc_ans, subject); "
    "CounterFact ROME format (case_id, requested_rewrite{prompt, subject, target_new, "
    "target_true}, paraphrase_prompts, neighborhood_prompts); "
    "EasyEdit flat format (prompt, subject, target_new, ground_truth, rephrase_prompt, "
    "locality_prompt, locality_ground_truth); "
    "KnowEdit (prompt, subject, target_new, ground_truth, locality{...}, portability{...}); "
    "lm_edit JSON schema (prompt, subject, target_new, target_true, rephrases, "
    "locality[{prompt, answer}], portability[...])"
)


def detect_format(first: Mapping[str, Any], label: str) -> Format:
    """Pick the format from the first record's keys (see the module docstring)."""
    keys = {key for key, value in first.items() if value is not None}
    if {"text", "labels", "concept"} <= keys:
        return WIKIBIO
    rewrite = first.get("requested_rewrite")
    if isinstance(rewrite, list):
        return MQUAKE
    if isinstance(rewrite, Mapping):
        return COUNTERFACT_ROME
    if {"src", "alt"} <= keys:
        return ZSRE_MEND
    if {"prompt", "subject", "target_new"} <= keys:
        return _detect_prompt_format(first, keys)
    raise EditRequestError(
        f"{label}: unknown edit-data format; the first record has keys {sorted(keys)}. "
        f"Supported formats: {FORMAT_SUMMARY}."
    )


def _detect_prompt_format(first: Mapping[str, Any], keys: set[str]) -> Format:
    if any(isinstance(first.get(key), Mapping) for key in ("locality", "portability")):
        return KNOWEDIT
    if not keys & (FLAT_KEYS - {"prompt", "subject", "target_new"}):
        return OWN
    loc = first.get("locality_prompt")
    if isinstance(loc, str) and loc.startswith("nq question:"):
        return ZSRE_FLAT
    return COUNTERFACT_FLAT
