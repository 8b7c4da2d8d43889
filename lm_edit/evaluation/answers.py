"""Judging generated answers: normalisation, exact match and containment.

``normalize`` follows SQuAD's answer normalisation: lower case, punctuation and the
articles a/an/the removed, whitespace collapsed. A generation is cut at its first line
break before judging (the editing tasks stop generating there too).

* exact match: the normalised generation *begins with* the normalised answer, followed by
  the end of the text or a word boundary (cloze prompts are continued past the answer,
  so a whole-string comparison would fail every correct continuation);
* containment: the normalised answer occurs anywhere in the normalised generation as
  whole words.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans(dict.fromkeys(string.punctuation, " "))


def normalize(text: str) -> str:
    """Lower case, punctuation and articles removed, whitespace collapsed."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def first_line(generation: str) -> str:
    """The generation up to its first line break (leading blank lines skipped)."""
    lines = generation.lstrip("\n").split("\n")
    return lines[0]


def _answers(answers: Iterable[str]) -> list[str]:
    normalised = [normalize(a) for a in answers]
    return [a for a in normalised if a]


def exact_match(generation: str, answers: Iterable[str]) -> float:
    """1.0 when the generation begins with one of ``answers`` (as whole words), else 0.0."""
    text = normalize(first_line(generation))
    hit = any(text == a or text.startswith(a + " ") for a in _answers(answers))
    return float(hit)


def contains(generation: str, answers: Iterable[str]) -> float:
    """1.0 when one of ``answers`` occurs in the generation as whole words, else 0.0."""
    text = f" {normalize(first_line(generation))} "
    return float(any(f" {a} " in text for a in _answers(answers)))


def agrees(generation: str, reference: str) -> float:
    """1.0 when ``generation`` begins with ``reference`` (both stripped), else 0.0.

    Used for locality as agreement with the unedited model: the reference is the
    unedited model's greedy continuation of the same prompt, so an unchanged model
    reproduces it exactly, character for character.
    """
    ref, text = reference.strip(), generation.strip()
    return float(text.startswith(ref) if ref else not text)
