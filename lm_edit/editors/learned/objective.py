"""The training objective of MEND and KE for one edit: the edit loss of the edited model on the
request and its rephrases, and the KL divergence between the unedited and the edited
model's next-token distributions on an unrelated text. The edited model is the base
model called with edited weights through ``torch.func.functional_call``, so the model
itself never changes and gradients reach the network through the edits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lm_edit.core.training import target_nll
from lm_edit.data.requests import EditRequest
from lm_edit.editors.learned.factors import (
    EditedWeight,
    Rows,
    as_stored,
    condition_batch,
    gradient_factors,
    request_rows,
    target_rows,
)
from lm_edit.editors.learned.ke_network import KeNetwork
from lm_edit.editors.learned.network import MendNetwork

EditNetwork = MendNetwork | KeNetwork
"""A trained network that turns an edit's gradient factors into weight changes."""

LocalityPositions = Literal["answer", "all"]
"""Where the locality KL is averaged: the positions whose input is an answer token (the
reference trainer's mask), or every position but the last."""


@dataclass(frozen=True)
class EditCase:
    """One training or validation edit: the request, and an unrelated prompt with its
    answer (a locality probe, or another case's fact) whose distributions must not move."""

    request: EditRequest
    unrelated: tuple[str, str]


def edited_parameters(
    model: nn.Module, weights: list[EditedWeight], deltas: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Each edited weight minus its change, in the parameter's orientation and dtype."""
    out = {}
    for weight in weights:
        base = model.get_parameter(weight.name)
        change = as_stored(deltas[weight.name], weight)
        out[weight.name] = (base.float() - change).to(base.dtype)
    return out


def log_probs(
    model: nn.Module, rows_batch, parameters: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """Log-probabilities (float32) of ``rows_batch`` (a padded batch), with ``parameters``
    in place of the model's own when given."""
    device = next(model.parameters()).device
    batch = rows_batch.to(device)
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    if parameters is None:
        logits = model(**inputs).logits
    else:
        logits = functional_call(model, parameters, args=(), kwargs=inputs, strict=False)
        logits = logits.logits
    return F.log_softmax(logits.float(), dim=-1)


def generality_rows(tokenizer: Any, request: EditRequest) -> Rows:
    """The prompt and every rephrase, each followed by the new target."""
    prompts = [request.prompt, *request.rephrases]
    return target_rows(tokenizer, [(p, request.target_new) for p in prompts])


def unrelated_row(
    tokenizer: Any, unrelated: tuple[str, str], positions: LocalityPositions
) -> tuple[Rows, torch.Tensor]:
    """The unrelated prompt followed by ``" " + answer``, whole (the answer's last token
    included), scored on the answer's tokens; and the (1, length) mask of the positions
    the locality KL averages over (see :data:`LocalityPositions`)."""
    rows = target_rows(tokenizer, [unrelated], whole=True)
    length = rows.batch.input_ids.shape[1]
    start = rows.spans[0][0][0] + 1  # the first answer token's index
    mask = torch.zeros(1, length)
    if positions == "answer":
        mask[0, start:] = 1
    else:
        mask[0, :-1] = 1
    return rows, mask


def masked_kl(before: torch.Tensor, after: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over unmasked positions of KL(before ‖ after), both log-probabilities."""
    kl = (before.exp() * (before - after)).sum(-1)
    mask = mask.to(kl.device, kl.dtype)
    return (kl * mask).sum() / mask.sum()


@dataclass
class EditOutcome:
    """The edit of one case: the target NLL before it, the edited parameters, the
    log-probabilities on the edit and unrelated rows before and after, and the losses."""

    loss_before: float
    parameters: dict[str, torch.Tensor]
    edit_rows: Rows
    edit_after: torch.Tensor
    unrelated_rows: Rows
    unrelated_before: torch.Tensor
    unrelated_after: torch.Tensor
    edit_loss: torch.Tensor
    locality_loss: torch.Tensor


def edit_and_score(
    model: nn.Module,
    tokenizer: Any,
    weights: list[EditedWeight],
    network: EditNetwork,
    case: EditCase,
    locality_positions: LocalityPositions,
) -> EditOutcome:
    """Edit for ``case`` with ``network`` (gradients flow to it when enabled) and score
    the edited model: target NLL on the prompt and rephrases, KL on the unrelated text at
    ``locality_positions``."""
    loss, factors = gradient_factors(model, weights, request_rows(tokenizer, [case.request]))
    condition = condition_batch(tokenizer, case.request)
    parameters = edited_parameters(model, weights, network.deltas(factors, condition))
    rows = generality_rows(tokenizer, case.request)
    edit_after = log_probs(model, rows.batch, parameters)
    unrelated, kl_mask = unrelated_row(tokenizer, case.unrelated, locality_positions)
    with torch.no_grad():
        before = log_probs(model, unrelated.batch)
    after = log_probs(model, unrelated.batch, parameters)
    return EditOutcome(
        loss_before=loss,
        parameters=parameters,
        edit_rows=rows,
        edit_after=edit_after,
        unrelated_rows=unrelated,
        unrelated_before=before,
        unrelated_after=after,
        edit_loss=target_nll(edit_after, rows.spans),
        locality_loss=masked_kl(before, after, kl_mask),
    )
