"""Tokenisation helpers shared by editors and metrics: batches without touching the
tokenizer's padding settings, and the position of a subject's last token."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Batch:
    """Right-padded token ids with their attention mask and true lengths."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: list[int]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.lengths)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` as the model sees it (special tokens such as BOS included)."""
    return list(tokenizer(text)["input_ids"])


def pad_batch(sequences: list[list[int]], pad_id: int = 0) -> Batch:
    """Right-pad id lists into one batch (positions of real tokens are unchanged)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return Batch(ids, mask, [len(s) for s in sequences])


def prompt_and_target(tokenizer, prompt: str, target: str) -> tuple[list[int], int]:
    """Ids of ``prompt + target`` and the index where the target's tokens start.

    The split follows lm-eval's HFLM: encode the whole string, count the prompt's own
    tokens, and treat the rest as the target.
    """
    whole = encode(tokenizer, prompt + target)
    start = len(encode(tokenizer, prompt))
    if start >= len(whole):
        raise ValueError(f"Target {target!r} adds no tokens after prompt {prompt!r}.")
    return whole, start


def subject_last_token(tokenizer, text: str, subject: str) -> tuple[list[int], int]:
    """Ids of ``text`` and the index of the last token of the last occurrence of ``subject``."""
    char_end = text.rfind(subject)
    if char_end < 0:
        raise ValueError(f"Subject {subject!r} does not occur in {text!r}.")
    char_end += len(subject)
    ids = encode(tokenizer, text)
    prefix_len = len(encode(tokenizer, text[:char_end]))
    return ids, min(prefix_len, len(ids)) - 1


def context_length(model) -> int | None:
    """The longest input the model's config allows (``None`` when it does not say)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
