"""Validation of a MEND or KE network on held-out edits, each applied alone to the unedited
model: edit success (the share of target tokens that are the argmax after the edit, with
the earlier target tokens fed in), generality (the same on the rephrases), locality (the
share of the unrelated answer's positions whose argmax the edit left unchanged, EasyEdit's
locality) and the mean losses and target log-probability gain."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lm_edit.core.training import Span
from lm_edit.editors.learned.factors import EditedWeight
from lm_edit.editors.learned.objective import (
    EditCase,
    EditNetwork,
    LocalityPositions,
    edit_and_score,
)


def _at(log_probs: torch.Tensor, span: Span) -> tuple[torch.Tensor, torch.Tensor]:
    positions, tokens = span
    where = torch.tensor(positions, device=log_probs.device)
    return log_probs[where], torch.tensor(tokens, device=log_probs.device)


def token_accuracy(log_probs: torch.Tensor, span: Span) -> float:
    """Share of the span's tokens that are the argmax (``log_probs`` is (seq, vocab))."""
    scored, tokens = _at(log_probs, span)
    return float((scored.argmax(-1) == tokens).float().mean())


def target_log_prob(log_probs: torch.Tensor, span: Span) -> float:
    """Mean log-probability of the span's tokens."""
    scored, tokens = _at(log_probs, span)
    return float(scored.gather(-1, tokens[:, None]).mean())


def same_argmax(before: torch.Tensor, after: torch.Tensor, span: Span) -> float:
    """Share of the span's positions where the argmax is unchanged."""
    first, _ = _at(before, span)
    second, _ = _at(after, span)
    return float((first.argmax(-1) == second.argmax(-1)).float().mean())


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def validate(
    model: nn.Module,
    tokenizer: Any,
    weights: list[EditedWeight],
    network: EditNetwork,
    cases: list[EditCase],
    locality_positions: LocalityPositions,
) -> dict[str, Any]:
    """The validation metrics of ``network`` over ``cases`` (network in eval mode)."""
    was_training = network.training
    network.eval()
    scores: dict[str, list[float]] = {
        k: []
        for k in (
            "edit_success",
            "generality",
            "locality",
            "edit_loss",
            "locality_kl",
            "target_logprob_gain",
        )
    }
    try:
        for case in cases:
            with torch.no_grad():
                out = edit_and_score(model, tokenizer, weights, network, case, locality_positions)
            spans = out.edit_rows.spans
            scores["edit_success"].append(token_accuracy(out.edit_after[0], spans[0]))
            for row, span in enumerate(spans[1:], start=1):
                scores["generality"].append(token_accuracy(out.edit_after[row], span))
            unrelated = out.unrelated_rows.spans[0]
            scores["locality"].append(
                same_argmax(out.unrelated_before[0], out.unrelated_after[0], unrelated)
            )
            scores["edit_loss"].append(float(out.edit_loss))
            scores["locality_kl"].append(float(out.locality_loss))
            gain = target_log_prob(out.edit_after[0], spans[0]) + out.loss_before
            scores["target_logprob_gain"].append(gain)
    finally:
        network.train(was_training)
    return {"cases": len(cases), **{k: _mean(v) for k, v in scores.items()}}
