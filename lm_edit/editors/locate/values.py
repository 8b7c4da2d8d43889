"""Target values v*: the MLP output at the subject's last token that makes the model say
the new object (ROME, section 3.1, eq. 4).

For one request, a vector ``δ`` is added to the layer's MLP output at the subject's last
token of every rewriting prompt (the edit prompt behind each context template) and of the
essence prompt ``"{subject} is a"``, and optimised with Adam to minimise

    NLL(target | prompt + δ)  +  kl_factor · KL(p₀ ‖ p_δ) on the essence prompt
    +  v_weight_decay · ‖δ‖² / ‖v₀‖²

with ``‖δ‖`` clamped to ``clamp_norm_factor · ‖v₀‖`` after every step and an early stop
once the NLL falls below ``early_stop_nll``. Then ``v* = v₀ + δ``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lm_edit.anatomy import ModelAnatomy
from lm_edit.hooks import edit_output
from lm_edit.requests import EditRequest
from lm_edit.tokens import pad_batch, prompt_and_target, subject_last_token


@dataclass(frozen=True)
class ValueConfig:
    """Hyperparameters of the v* optimisation (names follow the ROME paper's code)."""

    v_num_grad_steps: int = 25
    v_lr: float = 0.5
    v_weight_decay: float = 1e-3
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    early_stop_nll: float = 0.05


@dataclass(frozen=True)
class ValueResult:
    """v* for one request, the output it replaces, and how the optimisation ended."""

    target: torch.Tensor
    initial: torch.Tensor
    final_nll: float
    steps: int


@dataclass(frozen=True)
class _Rows:
    ids: list[list[int]]
    lookup: list[int]
    target_spans: list[tuple[int, list[int]]]


def _build_rows(tokenizer, request: EditRequest, templates: list[str]) -> _Rows:
    """Rewriting rows (one per template) then the essence row, with lookup positions and
    the (first predicting position, target ids) of every rewriting row."""
    ids, lookup, spans = [], [], []
    target = " " + request.target_new.strip()
    for template in templates:
        context = template.format(request.prompt)
        whole, start = prompt_and_target(tokenizer, context, target)
        _, subject_index = subject_last_token(tokenizer, context, request.subject)
        ids.append(whole[:-1])
        lookup.append(subject_index)
        spans.append((start - 1, whole[start:]))
    essence = f"{request.subject} is a"
    essence_ids, essence_index = subject_last_token(tokenizer, essence, request.subject)
    ids.append(essence_ids)
    lookup.append(essence_index)
    return _Rows(ids, lookup, spans)


@contextmanager
def _frozen(model) -> Iterator[None]:
    """Turn off gradients for the model's parameters (restored afterwards) and use eval mode."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    for p, _ in flags:
        p.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def optimise_value(
    model,
    tokenizer,
    anatomy: ModelAnatomy,
    layer: int,
    request: EditRequest,
    templates: list[str],
    config: ValueConfig,
) -> ValueResult:
    """Find v* for ``request`` at ``layer`` (see the module docstring)."""
    device = next(model.parameters()).device
    rows = _build_rows(tokenizer, request, templates)
    batch = pad_batch(rows.ids).to(device)
    row_index = torch.arange(len(rows.ids), device=device)
    lookup = torch.tensor(rows.lookup, device=device)
    module = model.get_submodule(anatomy.mlp_out_name(layer))
    delta = torch.zeros(module_output_width(module, anatomy), device=device, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=config.v_lr)
    state: dict[str, torch.Tensor] = {}

    def add_delta(output: torch.Tensor) -> torch.Tensor:
        if "initial" not in state:
            state["initial"] = output[0, rows.lookup[0]].detach().float().clone()
        output = output.clone()
        output[row_index, lookup] = output[row_index, lookup] + delta.to(output.dtype)
        return output

    nll = torch.tensor(float("inf"))
    step = 0
    with _frozen(model), torch.enable_grad(), edit_output(module, add_delta):
        for step in range(1, config.v_num_grad_steps + 1):
            optimiser.zero_grad()
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            log_probs = F.log_softmax(logits.float(), dim=-1)
            nll = _target_nll(log_probs, rows.target_spans)
            essence = log_probs[-1, batch.lengths[-1] - 1]
            if "essence" not in state:
                state["essence"] = essence.detach().clone()
            kl = F.kl_div(essence, state["essence"], log_target=True, reduction="sum")
            decay = delta.norm() ** 2 / state["initial"].norm() ** 2
            loss = nll + config.kl_factor * kl + config.v_weight_decay * decay
            if nll.item() < config.early_stop_nll:
                break
            if step == config.v_num_grad_steps:
                break
            loss.backward()
            optimiser.step()
            _clamp_(delta, config.clamp_norm_factor * state["initial"].norm())
    delta = delta.detach().float()
    return ValueResult(state["initial"] + delta, state["initial"], float(nll.item()), step)


def module_output_width(module, anatomy: ModelAnatomy) -> int:
    """Output width of a linear (or transposed Conv1D) module."""
    weight = module.weight
    return weight.shape[1] if anatomy.transposed else weight.shape[0]


def _target_nll(log_probs: torch.Tensor, spans: list[tuple[int, list[int]]]) -> torch.Tensor:
    """Mean over rewriting rows of the per-token NLL of the target."""
    losses = []
    for row, (first, target) in enumerate(spans):
        positions = torch.arange(first, first + len(target), device=log_probs.device)
        token_ids = torch.tensor(target, device=log_probs.device)
        losses.append(-log_probs[row, positions, token_ids].mean())
    return torch.stack(losses).mean()


def _clamp_(delta: torch.Tensor, max_norm: torch.Tensor) -> None:
    """Scale ``delta`` in place so its norm does not exceed ``max_norm``."""
    with torch.no_grad():
        norm = delta.norm()
        if norm > max_norm:
            delta.mul_(max_norm / norm)
