"""Context templates: short model-generated prefixes that make keys and values robust to
what precedes the subject (ROME, section 3.1)."""

from __future__ import annotations

import torch

from lm_edit.core.tokens import pad_batch
from lm_edit.core.training import seeded

SEED_WORDS = ("The", "Therefore", "Because", "I", "You")


def generate_context_templates(
    model, tokenizer, spec: list[tuple[int, int]], seed: int
) -> list[str]:
    """``["{}"]`` plus, for each ``(length, count)`` in ``spec``, ``count`` sampled prefixes of
    ``length`` tokens, each ending in ``". {}"``. Deterministic for a given ``seed``."""
    templates = ["{}"]
    with seeded(seed):
        for length, count in spec:
            starts = [SEED_WORDS[i % len(SEED_WORDS)] for i in range(count)]
            templates += [_clean(t) + ". {}" for t in _sample(model, tokenizer, starts, length)]
    return templates


def _sample(model, tokenizer, starts: list[str], length: int) -> list[str]:
    """Top-5 sampled continuations of each start word (left-padded, one batch)."""
    encoded = [list(tokenizer(s)["input_ids"]) for s in starts]
    width = max(len(e) for e in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    left = [[pad] * (width - len(e)) + e for e in encoded]
    batch = pad_batch(left, pad)
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.generate(
            batch.input_ids.to(device),
            attention_mask=mask.to(device),
            do_sample=True,
            top_k=5,
            max_new_tokens=length,
            pad_token_id=pad,
        )
    return tokenizer.batch_decode(out[:, width - 1 :], skip_special_tokens=True)


def _clean(text: str) -> str:
    """Drop braces (they would break ``str.format``) and line breaks."""
    return " ".join(text.replace("{", " ").replace("}", " ").split())
