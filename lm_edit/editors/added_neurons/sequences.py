"""The teacher-forced sequences both added-neuron editors train on: a request's prompt
followed by its new target, the positions whose next-token predictions are scored, and
whether the model already predicts every target token there."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lm_edit.core.tokens import Batch, pad_batch, prompt_and_target
from lm_edit.core.training import Span, teacher_forced
from lm_edit.data.requests import EditRequest


@dataclass(frozen=True)
class EditSequence:
    """``ids``: prompt and target without the target's last token (the model's input);
    ``span``: where each target token is predicted."""

    ids: list[int]
    span: Span


def edit_sequence(tokenizer, request: EditRequest) -> EditSequence:
    """The sequence that teaches ``request`` (target written after a space)."""
    whole, start = prompt_and_target(tokenizer, request.prompt, " " + request.target_new.strip())
    return EditSequence(whole[:-1], teacher_forced(start, whole[start:]))


def padded(sequences: list[EditSequence], device: torch.device) -> Batch:
    """Right-padded batch of the sequences' inputs (positions unchanged)."""
    return pad_batch([s.ids for s in sequences]).to(device)


def wrong_positions(logits: torch.Tensor, span: Span) -> list[int]:
    """Positions of ``span`` whose argmax in ``logits`` (seq, vocab) is not the target."""
    positions, tokens = span
    guess = logits[positions].argmax(dim=-1).tolist()
    return [p for p, g, t in zip(positions, guess, tokens, strict=True) if g != t]


def all_predicted(logits: torch.Tensor, spans: list[Span]) -> bool:
    """Whether every row of ``logits`` (rows, seq, vocab) predicts its whole target."""
    return all(not wrong_positions(logits[row], span) for row, span in enumerate(spans))
