"""Adjusted perplexity: language-modelling damage that repetition cannot hide.

An edited model that has collapsed into repeating itself ("Paris Paris Paris ...") can get
a *low* perplexity on its own output. Following the language-modelling analysis of Lin et
al. (2024), "Navigating the Dual Facets" (Section 6), which scores an edited model's
generations with a perplexity that penalises repetition, lm-edit defines:

* the evaluated model continues each of the 16 prompts in ``lm_edit/data/lm_prompts.txt``
  greedily for ``max_new_tokens`` tokens (cut at the first end-of-sequence token);
* ``ppl = exp(mean NLL)``, the mean over all generated tokens of the scoring model's
  negative log-likelihood of the generated text given its prompt (the text is re-tokenised
  by the scoring model's tokenizer, so any causal LM can score);
* ``distinct_2`` = mean over generations of (distinct token bigrams / bigrams) of the
  generated token ids (1.0 for a generation of fewer than two tokens);
* ``adjusted_ppl = ppl / distinct_2``: a generation that cycles one token has
  ``distinct_2`` near ``1 / max_new_tokens`` and its perplexity is multiplied by about that
  many.

The scoring model defaults to the unedited model itself: the live model with the stream's
changes temporarily taken back (weights restored bit for bit, added modules and hooks
removed), so no second copy of the model is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from lm_edit.core.record import EditRecord, temporarily_unedited
from lm_edit.paths import LM_PROMPTS


def default_prompts() -> list[str]:
    """The shipped generation prompts, one a line."""
    lines = LM_PROMPTS.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()]


def distinct_2(ids: list[int]) -> float:
    """Distinct bigrams over bigrams of one token sequence (1.0 below two tokens)."""
    bigrams = list(zip(ids, ids[1:], strict=False))
    return len(set(bigrams)) / len(bigrams) if bigrams else 1.0


@torch.no_grad()
def generate(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int
) -> list[list[int]]:
    """Greedy continuation token ids of each prompt, generated as one left-padded batch and
    cut at the first end-of-sequence token."""
    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    try:
        batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    finally:
        tokenizer.padding_side = side
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    outputs = []
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        eos = tokenizer.eos_token_id
        outputs.append(row[: row.index(eos)] if eos in row else row)
    return outputs


@torch.no_grad()
def continuation_nll(model: Any, tokenizer: Any, prompt: str, text: str) -> tuple[float, int]:
    """Summed negative log-likelihood of ``text`` after ``prompt``, and its token count."""
    device = next(model.parameters()).device
    context = tokenizer(prompt)["input_ids"]
    whole = tokenizer(prompt + text)["input_ids"]
    if len(whole) <= len(context):
        return 0.0, 0
    ids = torch.tensor([whole], device=device)
    logprobs = model(ids).logits[0, :-1].log_softmax(-1)
    targets = ids[0, 1:]
    picked = logprobs.gather(1, targets[:, None])[:, 0][len(context) - 1 :]
    return float(-picked.sum()), int(picked.numel())


Scorer = Callable[[list[str], list[str]], tuple[float, int]]


def model_scorer(model: Any, tokenizer: Any) -> Scorer:
    """Score (prompt, text) pairs with ``model``: summed NLL and token count."""

    def score(prompts: list[str], texts: list[str]) -> tuple[float, int]:
        total, count = 0.0, 0
        for prompt, text in zip(prompts, texts, strict=True):
            nll, n = continuation_nll(model, tokenizer, prompt, text)
            total, count = total + nll, count + n
        return total, count

    return score


def adjusted_perplexity(
    model: Any,
    tokenizer: Any,
    score: Scorer | None = None,
    records: list[EditRecord] | None = None,
    prompts: list[str] | None = None,
    max_new_tokens: int = 32,
) -> dict[str, float]:
    """``ppl``, ``distinct_2`` and ``adjusted_ppl`` of ``model``'s greedy generations (see
    the module docstring). Without ``score``, the model scores itself with every change
    of ``records`` taken back while scoring (:func:`temporarily_unedited`)."""
    prompts = prompts or default_prompts()
    generated = generate(model, tokenizer, prompts, max_new_tokens)
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in generated]
    if score is None:
        with temporarily_unedited(model, records or []):
            nll, count = model_scorer(model, tokenizer)(prompts, texts)
    else:
        nll, count = score(prompts, texts)
    ppl = math.exp(nll / count) if count else float("nan")
    diversity = sum(distinct_2(ids) for ids in generated) / len(generated)
    return {"ppl": ppl, "distinct_2": diversity, "adjusted_ppl": ppl / diversity}
