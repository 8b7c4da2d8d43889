"""Teacher-forced scoring of an answer, one token at a time, through stock loglikelihood.

EasyEdit's token accuracy feeds the prompt and the answer to the model and counts the
answer positions where the model's argmax is the answer's own next token. lm-eval's
``loglikelihood(context, continuation)`` reports whether the whole continuation is the
greedy one; asking it once per answer token (the context being the prompt plus the
answer's earlier tokens) gives exactly that per-token check, under ``hf`` and
``edited-hf`` alike.

The split must survive lm-eval's own tokenisation (HFLM encodes ``context +
continuation`` whole and counts the context's tokens). A boundary where the context on
its own tokenises differently from the whole string (a BPE merge across the boundary,
or trailing whitespace, which HFLM moves into the continuation) is not used: the
tokens on both sides are scored as one step, all or nothing, and weigh as many tokens
as they hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One loglikelihood request: ``continuation`` after ``context``, ``tokens`` long."""

    context: str
    continuation: str
    tokens: int


@dataclass(frozen=True)
class ForcedScore:
    """An answer's teacher-forced result: log-probability (summed over its tokens), its
    token count, all-tokens-greedy flag and token accuracy (the fraction of answer tokens
    that are the argmax)."""

    logprob: float
    exact: float
    token_accuracy: float
    tokens: int = 1

    @property
    def mean_logprob(self) -> float:
        """Log-probability per answer token: minus ROME's mean per-token NLL."""
        return self.logprob / self.tokens


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _char_ends(tokenizer, text: str, start: int, ids: list[int]) -> list[int]:
    """Character offset in ``text`` where each token from ``start`` on ends."""
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [end for _, end in offsets["offset_mapping"][start:]]
    return [len(tokenizer.decode(ids[: i + 1])) for i in range(start, len(ids))]


def forced_steps(tokenizer, prompt: str, answer: str) -> list[Step]:
    """The loglikelihood requests that score ``answer`` after ``prompt`` token by token.

    ``answer`` is used as given (the editing tasks put a space before it). Raises
    ``ValueError`` when the answer adds no tokens.
    """
    text = prompt + answer
    ids = _ids(tokenizer, text)
    start = len(_ids(tokenizer, prompt))
    if start >= len(ids) or not answer:
        raise ValueError(f"Answer {answer!r} adds no tokens after prompt {prompt!r}.")
    ends = _char_ends(tokenizer, text, start, ids)
    steps: list[Step] = []
    begin, count = len(prompt), 0
    for position, end in enumerate(ends[:-1], start=start + 1):
        count += 1
        cut = max(end, begin)
        context = text[:cut]
        if context != context.rstrip() or _ids(tokenizer, context) != ids[:position]:
            continue
        steps.append(Step(text[:begin], text[begin:cut], count))
        begin, count = cut, 0
    steps.append(Step(text[:begin], text[begin:], count + 1))
    return steps


def forced_score(steps: list[Step], results: list[tuple[float, bool]]) -> ForcedScore:
    """Combine the loglikelihood results of ``steps`` (in order) into one score."""
    if len(steps) != len(results) or not steps:
        raise ValueError(f"Expected {len(steps)} loglikelihood results, got {len(results)}.")
    total = sum(step.tokens for step in steps)
    right = sum(step.tokens for step, (_, greedy) in zip(steps, results, strict=True) if greedy)
    return ForcedScore(
        logprob=float(sum(ll for ll, _ in results)),
        exact=float(right == total),
        token_accuracy=right / total,
        tokens=total,
    )


def prefers(first: ForcedScore, second: ForcedScore) -> float:
    """1.0 when ``first`` is the likelier answer by mean per-token log-probability (ROME's
    comparison of mean NLLs, ``test_batch_prediction``), else 0.0."""
    return float(first.mean_logprob > second.mean_logprob)


def prefers_in_sum(first: ForcedScore, second: ForcedScore) -> float:
    """1.0 when ``first`` has the larger summed log-probability (the whole answer's
    probability; penalises longer answers), else 0.0."""
    return float(first.logprob > second.logprob)


def probability_gap(first: ForcedScore, second: ForcedScore) -> float:
    """exp(mean log-probability) of ``first`` minus that of ``second``: ROME's magnitude
    ``exp(-NLL_new) - exp(-NLL_true)`` with per-token mean NLLs."""
    return math.exp(first.mean_logprob) - math.exp(second.mean_logprob)
