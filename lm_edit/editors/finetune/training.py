"""The objective and training loop shared by the fine-tuning editors (EasyEdit's FT and
LoRA loops, ``easyeditor/models/ft/ft_main.py`` and ``lora/lora_main.py``).

Each request becomes one row, its prompt followed by ``" " + target_new``, scored on the
target's tokens only:

* ``objective: prompt_last`` (FT-L, the fine-tuning baseline of the ROME paper): the input
  is the prompt alone and every target token is scored at the prompt's last position, the
  per-request loss being the mean of ``-log p(t_i | prompt)`` over the target tokens.
  For one-token targets this is the usual next-token loss; for longer ones it pushes all
  target tokens at that one position, as EasyEdit's code does;
* ``objective: target_new`` (FT-M, LoRA): teacher forcing over the full target, the loss
  masked to the target tokens (mean per request). The input is the whole prompt and
  target, its last token included (its prediction is not scored), as EasyEdit's loops feed
  it: with LoRA's dropout the masks then have the reference's shape and draws.

The batch loss is the mean over requests. Training makes ``num_steps`` passes over the
batch, one Adam step per ``requests_per_step`` requests (EasyEdit's ``batch_size``); a step
is skipped when its loss is already below ``early_stop_loss``, and training stops after a
pass whose mean loss is (0 never stops early).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lm_edit.core.arguments import argument
from lm_edit.core.tokens import pad_batch, prompt_and_target
from lm_edit.core.training import Span, target_nll, teacher_forced
from lm_edit.data.requests import EditRequest


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of the training loop (names follow EasyEdit's files)."""

    objective: Literal["prompt_last", "target_new"] = "target_new"
    num_steps: int = argument(25, ge=1, help="passes over the batch")
    lr: float = argument(5e-4, gt=0, help="Adam learning rate")
    weight_decay: float = argument(0.0, ge=0, help="Adam weight decay")
    requests_per_step: int = argument(1, ge=1, help="requests per optimiser step")
    early_stop_loss: float = argument(1e-2, ge=0, help="stop once a pass's mean loss is below")


@dataclass(frozen=True)
class TrainingRow:
    """Model input of one request and where its target is scored."""

    ids: list[int]
    span: Span


@dataclass(frozen=True)
class TrainingResult:
    """How training ended: the mean loss of the last pass and the passes made."""

    loss: float
    passes: int


def training_rows(tokenizer, requests: list[EditRequest], objective: str) -> list[TrainingRow]:
    """One row per request for ``objective`` (see the module docstring)."""
    rows = []
    for request in requests:
        whole, start = prompt_and_target(
            tokenizer, request.prompt, " " + request.target_new.strip()
        )
        target = whole[start:]
        if objective == "prompt_last":
            rows.append(TrainingRow(whole[:start], ([start - 1] * len(target), target)))
        else:
            rows.append(TrainingRow(whole, teacher_forced(start, target)))
    return rows


def rows_loss(model: nn.Module, rows: list[TrainingRow]) -> torch.Tensor:
    """Mean over ``rows`` of the target NLL, in one right-padded forward pass."""
    device = next(model.parameters()).device
    batch = pad_batch([row.ids for row in rows]).to(device)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return target_nll(F.log_softmax(logits.float(), dim=-1), [row.span for row in rows])


def train(
    model: nn.Module,
    tokenizer,
    requests: list[EditRequest],
    parameters: list[torch.Tensor],
    config: TrainingConfig,
    after_step: Callable[[], None] | None = None,
) -> TrainingResult:
    """Optimise ``parameters`` (which must require gradients) on ``requests``;
    ``after_step`` runs after every step (FT-L's norm constraint)."""
    rows = training_rows(tokenizer, requests, config.objective)
    size = config.requests_per_step
    chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
    optimiser = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    mean = float("inf")
    passes = 0
    with torch.enable_grad():
        for _ in range(config.num_steps):
            passes += 1
            total = 0.0
            for chunk in chunks:
                optimiser.zero_grad()
                loss = rows_loss(model, chunk)
                total += loss.item() * len(chunk)
                if loss.item() >= config.early_stop_loss:
                    loss.backward()
                    optimiser.step()
                if after_step is not None:
                    after_step()
            mean = total / len(rows)
            if mean < config.early_stop_loss:
                break
    for parameter in parameters:
        parameter.grad = None
    return TrainingResult(mean, passes)
