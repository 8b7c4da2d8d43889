"""CommonsenseQA as an 8-shot generative task whose first option letter is the answer (the
protocol of the sequential-editing studies), unlike lm-eval's 0-shot log-likelihood
``commonsense_qa``."""

from __future__ import annotations

from typing import Any

from lm_edit.studies.capability.choices import first_option_letter, option_lines

N_EXEMPLARS = 8
"""Few-shot exemplars: the first rows of the validation split, left out of the scored docs
(the training split is not part of the offline copies)."""


def doc_to_text(doc: dict[str, Any]) -> str:
    """Question and lettered options, as in lm-eval's ``commonsense_qa``."""
    return f"Question: {doc['question'].strip()}\n{option_lines(doc['choices']['text'])}\nAnswer:"


def exemplars(dataset: Any) -> Any:
    """The few-shot exemplars (the first ``N_EXEMPLARS`` rows)."""
    return dataset.select(range(min(N_EXEMPLARS, len(dataset))))


def scored(dataset: Any) -> Any:
    """The scored docs: every row after the exemplars."""
    return dataset.select(range(min(N_EXEMPLARS, len(dataset)), len(dataset)))


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Accuracy of the first option letter in the generation."""
    chosen = first_option_letter(results[0], len(doc["choices"]["label"]))
    return {"acc": float(chosen == doc["answerKey"])}
