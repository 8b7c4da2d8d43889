"""Target values v*: the activation at the subject's last token that makes the model say
the new object (ROME, section 3.1, eq. 4; MEMIT, eq. 16).

For one request, a vector ``δ`` is added at the subject's last token of every rewriting
prompt (the edit prompt behind each context template) and of the essence prompt
``"{subject} is a"``, either to the layer's MLP output (``value_site: mlp``, ROME) or to
the block's output, the residual stream (``value_site: block``, MEMIT). It is optimised
with Adam to minimise

    NLL(target | prompt + δ)  +  kl_factor · KL(p_δ ‖ p₀) on the essence prompt
    +  v_weight_decay · ‖δ‖ / ‖v₀‖²

(the terms of the reference implementations; the KL term compares the next-token
distributions at the subject's last token of the essence prompt, where ``δ`` is added)
with ``‖δ‖`` clamped to
``clamp_norm_factor · ‖v₀‖`` after every step and an early stop once the NLL (or, with
``early_stop_on: loss``, the whole loss, as the reference code) falls below
``early_stop_nll``. Then ``v* = v₀ + δ``.

``joint_attention_value`` (PMET) optimises a second vector on the attention output of
the same block together with ``δ``; it shapes ``δ`` but only ``δ`` is returned, since
only the MLP is rewritten.

``argmax_nll_factor`` (PMET's code, ``compute_zs.py``): after a pass in which the new
target is the argmax at every target token of every rewriting prompt, the next pass
weighs the NLL by this factor, and the optimisation stops at such a pass if
``kl_factor · KL`` is at most ``argmax_kl_stop``; a pass in which the target does not lead
everywhere restores the weight 1.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.core.arguments import argument
from lm_edit.core.hooks import edit_output
from lm_edit.core.placement import module_device
from lm_edit.core.tokens import pad_batch, prompt_and_target, subject_last_token
from lm_edit.core.training import Span, frozen, target_nll, teacher_forced
from lm_edit.data.requests import EditRequest


@dataclass(frozen=True)
class ValueConfig:
    """Hyperparameters of the v* optimisation (names follow the ROME paper's code)."""

    v_num_grad_steps: int = argument(25, ge=1)
    v_lr: float = argument(0.5, gt=0)
    v_weight_decay: float = argument(1e-3, ge=0)
    clamp_norm_factor: float = argument(4.0, gt=0)
    kl_factor: float = argument(0.0625, ge=0)
    early_stop_nll: float = argument(0.05, ge=0)
    early_stop_on: Literal["nll", "loss"] = "nll"
    value_site: Literal["mlp", "block"] = "mlp"
    joint_attention_value: bool = False
    argmax_nll_factor: float | None = argument(
        None, gt=0, help="NLL weight once the target is the argmax everywhere (PMET: 0.1)"
    )
    argmax_kl_stop: float = argument(0.01, ge=0, help="with argmax_nll_factor: stop below")


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
    target_spans: list[Span]


def _build_rows(tokenizer, request: EditRequest, templates: list[str]) -> _Rows:
    """Rewriting rows (one per template) then the essence row, with lookup positions and
    the target span of every rewriting row."""
    ids, lookup, spans = [], [], []
    target = " " + request.target_new.strip()
    for template in templates:
        context = template.format(request.prompt)
        whole, start = prompt_and_target(tokenizer, context, target)
        _, subject_index = subject_last_token(tokenizer, context, request.subject)
        ids.append(whole[:-1])
        lookup.append(subject_index)
        spans.append(teacher_forced(start, whole[start:]))
    essence = f"{request.subject} is a"
    essence_ids, essence_index = subject_last_token(tokenizer, essence, request.subject)
    ids.append(essence_ids)
    lookup.append(essence_index)
    return _Rows(ids, lookup, spans)


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
    site = value_site_name(anatomy, layer, config.value_site)
    sites = [site]
    if config.joint_attention_value:
        sites.append(anatomy.attn_out_name(layer))
    width = anatomy.hidden_size(model)
    # each delta lives where its site's layer does (a sharded model spans devices)
    deltas = [
        torch.zeros(
            width, device=module_device(model.get_submodule(name), device), requires_grad=True
        )
        for name in sites
    ]
    optimiser = torch.optim.Adam(deltas, lr=config.v_lr)
    initial: dict[int, torch.Tensor] = {}
    editors = [
        edit_output(model.get_submodule(name), _adder(rows, delta, initial, index))
        for index, (name, delta) in enumerate(zip(sites, deltas, strict=True))
    ]
    reference: torch.Tensor | None = None
    nll = torch.tensor(float("inf"))
    nll_weight = 1.0
    step = 0
    with frozen(model), torch.enable_grad(), ExitStack() as stack:
        for context in editors:
            stack.enter_context(context)
        for step in range(1, config.v_num_grad_steps + 1):
            optimiser.zero_grad()
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            log_probs = F.log_softmax(logits.float(), dim=-1)
            nll = target_nll(log_probs, rows.target_spans)
            essence = log_probs[-1, rows.lookup[-1]]  # at the subject, as the references
            if reference is None:
                reference = essence.detach().clone()
            kl = F.kl_div(reference, essence, log_target=True, reduction="sum")
            decay = sum(d.norm() / initial[i].norm() ** 2 for i, d in enumerate(deltas))
            weighted_kl = config.kl_factor * kl
            loss = nll_weight * nll + weighted_kl + config.v_weight_decay * decay
            watched = nll if config.early_stop_on == "nll" else loss
            if watched.item() < config.early_stop_nll or step == config.v_num_grad_steps:
                break
            if config.argmax_nll_factor is not None:
                nll_weight = 1.0
                if _targets_are_argmax(log_probs, rows.target_spans):
                    nll_weight = config.argmax_nll_factor
                    if weighted_kl.item() <= config.argmax_kl_stop:
                        break
            loss.backward()
            optimiser.step()
            for index, delta in enumerate(deltas):
                _clamp_(delta, config.clamp_norm_factor * initial[index].norm())
    shift = deltas[0].detach().float()
    return ValueResult(initial[0] + shift, initial[0], float(nll.item()), step)


def _targets_are_argmax(log_probs: torch.Tensor, spans: list[Span]) -> bool:
    """Whether every target token of every row is its position's most likely token."""
    for row, (positions, token_ids) in enumerate(spans):
        scores = log_probs[row, torch.tensor(positions, device=log_probs.device)].detach()
        wanted = scores[torch.arange(len(token_ids)), torch.tensor(token_ids, device=scores.device)]
        if (wanted < scores.max(dim=-1).values).any():
            return False
    return True


def value_site_name(anatomy: ModelAnatomy, layer: int, site: str) -> str:
    """Module whose output carries v*: the MLP output projection or the whole block."""
    return anatomy.mlp_out_name(layer) if site == "mlp" else anatomy.layer_name(layer)


def _adder(rows: _Rows, delta: torch.Tensor, initial: dict, index: int):
    """Output hook adding ``delta`` at every row's lookup position (recording the clean
    value of the first row once, before any change)."""
    row_index = torch.arange(len(rows.ids), device=delta.device)
    lookup = torch.tensor(rows.lookup, device=delta.device)

    def add(output):
        hidden = output[0] if isinstance(output, tuple) else output
        if index not in initial:
            initial[index] = hidden[0, rows.lookup[0]].detach().float().clone()
        hidden = hidden.clone()
        hidden[row_index, lookup] = hidden[row_index, lookup] + delta.to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return add


def _clamp_(delta: torch.Tensor, max_norm: torch.Tensor) -> None:
    """Scale ``delta`` in place so its norm does not exceed ``max_norm``."""
    with torch.no_grad():
        norm = delta.norm()
        if norm > max_norm:
            delta.mul_(max_norm / norm)
