"""SuperGLUE AX-b (the broad-coverage diagnostic) as a 0-shot generative entailment task,
scored by accuracy and by Matthews correlation (SuperGLUE's metric for AX-b)."""

from __future__ import annotations

from typing import Any

from lm_edit.studies.capability.choices import first_option_letter

INVALID = -1
"""The prediction recorded when the generation names no option (always wrong)."""


def doc_to_text(doc: dict[str, Any]) -> str:
    """The two sentences and the question, answered with A (entailed) or B (not)."""
    return (
        f"{doc['sentence1']}\n{doc['sentence2']}\n"
        "Is the sentence below entailed by the sentence above?\nA. Yes\nB. No\nAnswer:"
    )


def doc_to_target(doc: dict[str, Any]) -> str:
    """``A`` for entailment (label 0), ``B`` for not_entailment (label 1)."""
    return "AB"[doc["label"]]


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Accuracy, and the (gold, prediction) pair that Matthews correlation aggregates."""
    letter = first_option_letter(results[0], 2)
    prediction = "AB".index(letter) if letter else INVALID
    return {"acc": float(prediction == doc["label"]), "mcc": (doc["label"], prediction)}
