"""What MEND edits and the gradient factors it transforms: the chosen weights, the token
rows of a request, and each weight's input ``u`` and output gradient ``δ`` per token of
the edit loss."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lm_edit.core.anatomy import ModelAnatomy, is_transposed, weight_as_out_in
from lm_edit.core.record import EditRecord
from lm_edit.core.tokens import Batch, pad_batch, prompt_and_target
from lm_edit.core.training import Span, target_nll, teacher_forced
from lm_edit.data.requests import EditRequest
from lm_edit.editors.layers import mlp_gate_path, mlp_module_path

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]
"""Per parameter name: the rows of ``u`` (n, in) and of ``δ`` (n, out)."""


@dataclass(frozen=True)
class EditedWeight:
    """One weight MEND edits: its parameter name, module path, (in, out) shape and
    whether it is stored as (in, out) (GPT-2's ``Conv1D``)."""

    name: str
    module: str
    shape: tuple[int, int]
    transposed: bool


def edited_weights(
    model: nn.Module, anatomy: ModelAnatomy, layers: list[int], modules: tuple[str, ...]
) -> list[EditedWeight]:
    """The weights of ``modules`` (``mlp_in``, ``mlp_out``, ``mlp_gate``) in each of
    ``layers``."""
    return [
        edited_weight(model, anatomy, _module_path(model, anatomy, layer, kind))
        for layer in layers
        for kind in modules
    ]


def _module_path(model: nn.Module, anatomy: ModelAnatomy, layer: int, kind: str) -> str:
    if kind == "mlp_gate":
        return mlp_gate_path(model, anatomy, layer)
    return mlp_module_path(anatomy, layer, kind)


def edited_weight(
    model: nn.Module, anatomy: ModelAnatomy, path: str, transposed: bool | None = None
) -> EditedWeight:
    """The weight of the linear module at ``path``, stored as (in, out) when
    ``transposed`` (by default: a ``Conv1D``, or any module of a model whose anatomy says
    so)."""
    module = model.get_submodule(path)
    if transposed is None:
        transposed = is_transposed(module) or anatomy.transposed
    out_features, in_features = weight_as_out_in(module, transposed).shape
    shape = (int(in_features), int(out_features))
    return EditedWeight(f"{path}.weight", path, shape, transposed)


def last_blocks(num_layers: int, layers: tuple[int, ...], count: int) -> list[int]:
    """``layers``, or the last ``count`` blocks when it is empty; validated."""
    chosen = sorted(set(layers)) or list(range(max(0, num_layers - count), num_layers))
    bad = [layer for layer in chosen if layer >= num_layers]
    if bad:
        raise ValueError(
            f"layers={bad} is outside the model, which has layers 0..{num_layers - 1}."
        )
    return chosen


@dataclass(frozen=True)
class Rows:
    """Right-padded token rows and where each row's target is scored."""

    batch: Batch
    spans: list[Span]


def target_rows(tokenizer: Any, pairs: list[tuple[str, str]], *, whole: bool = False) -> Rows:
    """One teacher-forced row per ``(prompt, target)``: the prompt followed by
    ``" " + target``, scored on the target's tokens; the target's last token is input too
    when ``whole`` (its prediction is not scored)."""
    ids, spans = [], []
    for prompt, target in pairs:
        tokens, start = prompt_and_target(tokenizer, prompt, " " + target.strip())
        ids.append(tokens if whole else tokens[:-1])
        spans.append(teacher_forced(start, tokens[start:]))
    return Rows(pad_batch(ids), spans)


def request_rows(tokenizer: Any, requests: list[EditRequest]) -> Rows:
    """The edit rows of a batch: each request's prompt followed by its new target."""
    return target_rows(tokenizer, [(r.prompt, r.target_new) for r in requests])


def condition_batch(tokenizer: Any, request: EditRequest) -> Batch:
    """The tokens of one edit, its prompt followed by ``" " + target_new``: what KE's
    network reads (MEND reads none)."""
    whole, _ = prompt_and_target(tokenizer, request.prompt, " " + request.target_new.strip())
    return pad_batch([whole])


def rows_logits(model: nn.Module, rows: Rows, **kwargs: Any) -> torch.Tensor:
    """The model's log-probabilities on ``rows`` (float32)."""
    device = next(model.parameters()).device
    batch = rows.batch.to(device)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs).logits
    return F.log_softmax(logits.float(), dim=-1)


@contextmanager
def _requiring_grad(parameters: list[nn.Parameter]):
    flags = [p.requires_grad for p in parameters]
    try:
        for parameter in parameters:
            parameter.requires_grad_(True)
        yield
    finally:
        for parameter, flag in zip(parameters, flags, strict=True):
            parameter.requires_grad_(flag)


Signals = dict[str, tuple[torch.Tensor, torch.Tensor]]
"""Per parameter name: the weight's input (rows, seq, in) and the loss's gradient at its
output (rows, seq, out), detached."""


def weight_signals(
    model: nn.Module,
    weights: list[EditedWeight],
    rows: Rows,
    loss_of: Callable[[torch.Tensor, list[Span]], torch.Tensor] = target_nll,
) -> tuple[float, Signals]:
    """The edit loss ``loss_of(log-probabilities, spans)`` of ``rows`` (the mean target
    NLL by default) and, for each weight, its input and the loss's gradient at its output
    at every position. Parameters' ``.grad`` are left untouched."""
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            captured[name] = (args[0].detach(), output)

        return record

    handles = [model.get_submodule(w.module).register_forward_hook(hook(w.name)) for w in weights]
    parameters = [model.get_parameter(w.name) for w in weights]
    try:
        with torch.enable_grad(), _requiring_grad(parameters):
            loss = loss_of(rows_logits(model, rows), rows.spans)
            unused = [w.module for w in weights if w.name not in captured]
            if unused:
                raise ValueError(
                    f"{', '.join(unused)}: not called in the model's forward pass, so it has "
                    "no inputs or gradients to edit with; choose modules the model uses."
                )
            outputs = [captured[w.name][1] for w in weights]
            grads = torch.autograd.grad(loss, outputs)
    finally:
        for handle in handles:
            handle.remove()
    signals = {
        weight.name: (captured[weight.name][0], grad.detach())
        for weight, grad in zip(weights, grads, strict=True)
    }
    return float(loss.detach()), signals


def gradient_factors(
    model: nn.Module, weights: list[EditedWeight], rows: Rows
) -> tuple[float, Factors]:
    """The edit loss (mean target NLL of ``rows``) and, for each weight, the input and
    output-gradient rows of every token position where both are non-zero (padding drops
    out), detached. Parameters' ``.grad`` are left untouched."""
    loss, signals = weight_signals(model, weights, rows)
    factors: Factors = {}
    for weight in weights:
        inputs, grad = signals[weight.name]
        u = inputs.reshape(-1, weight.shape[0])
        delta = grad.reshape(-1, weight.shape[1])
        keep = (u != 0).any(-1) & (delta != 0).any(-1)
        factors[weight.name] = (u[keep], delta[keep])
    return loss, factors


def add_change(
    model: nn.Module, record: EditRecord, weight: EditedWeight, change: torch.Tensor
) -> float:
    """Add an (out, in) ``change`` to ``weight`` in its stored orientation, device and
    dtype, snapshotting the weight first; the change's norm."""
    tensor = record.snapshot(model, weight.name)
    stored = as_stored(change, weight)
    tensor.add_(stored.to(device=tensor.device, dtype=tensor.dtype))
    return round(float(change.norm()), 6)


def as_stored(delta: torch.Tensor, weight: EditedWeight) -> torch.Tensor:
    """An (out, in) change in the orientation the parameter is stored in."""
    return delta.T if weight.transposed else delta
