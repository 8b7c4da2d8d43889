"""Lettered options in prompts, and reading the chosen letter back from a generation."""

from __future__ import annotations

import re
from collections.abc import Sequence

LETTERS = "ABCDEFGHIJ"


def option_lines(choices: Sequence[str]) -> str:
    """``A. first\\nB. second...`` for the given choices."""
    if len(choices) > len(LETTERS):
        raise ValueError(f"{len(choices)} options; at most {len(LETTERS)} are supported.")
    return "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))


def first_option_letter(generation: str, n_options: int) -> str | None:
    """The first option letter (A, B, ...) the generation states, or None.

    A letter counts when it stands alone: at the start, or not inside a word ("A",
    "(B)", "答：C", "The answer is D."). Lower-case letters and letters inside words
    ("Because") do not count.
    """
    allowed = LETTERS[:n_options]
    match = re.search(rf"(?<![A-Za-z])([{allowed}])(?![A-Za-z])", generation)
    return match.group(1) if match else None
