"""Knowledge attribution (Dai et al., 2022): which MLP neurons express a fact.

A neuron is one unit of an MLP's intermediate activation, the input of the MLP output
projection (read with a forward pre-hook on the anatomy's ``mlp_out`` module). Its
attribution for an answer token is integrated gradients along the straight line from
zero to the neuron's activation at the prompt's last position, as a Riemann sum of
``steps`` points (``k / steps``, k = 1..steps) evaluated ``steps_per_batch`` at a time::

    attribution = activation · mean_k ∂ p(token | activation scaled by k/steps) / ∂ activation

For an answer of several tokens each token is scored after the prompt and the answer's
earlier tokens, and the attributions are averaged over the tokens. The neurons of one
prompt are those above ``adaptive_threshold`` times the prompt's largest attribution;
across several prompts of the same fact, those found for more than ``p`` of the prompts
are kept.

Only the last position's activation is scaled, so under causal attention every earlier
position computes the same keys and values for all points: those are computed once per
query (a key-value cache of the prompt minus its last token) and each batch of points
runs the last token alone against it. ``cached=False`` runs every point over the whole
prompt instead (the equal, slower computation; ``bench/kn_attribution.py`` compares them).
"""

from __future__ import annotations

import copy
import inspect
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from lm_edit.core.anatomy import ModelAnatomy, UnsupportedArchitectureError
from lm_edit.core.hooks import CACHE_KWARGS, capture_inputs, replace_last_input, run_until_stop
from lm_edit.core.placement import input_device
from lm_edit.core.tokens import encode, prompt_and_target

Neuron = tuple[int, int]
Answer = str | tuple[int, ...]
"""An answer as text (tokenised after each prompt, with a leading space) or as token ids
(the model's own next token, which need not start a word)."""
"""(layer, index of the unit in the MLP's intermediate activation)."""


@dataclass(frozen=True)
class Query:
    """One forward input and the token whose probability is attributed at its end."""

    ids: list[int]
    token: int


@dataclass(frozen=True)
class AttributionSettings:
    """How attribution is computed and thresholded (the editor's hyperparameters)."""

    layers: tuple[int, ...]
    steps: int
    steps_per_batch: int
    adaptive_threshold: float
    p: float
    cached: bool = True


def answer_tokens(tokenizer, prompt: str, answer: Answer) -> tuple[list[int], int]:
    """Ids of ``prompt`` followed by ``answer``, and the index where the answer starts."""
    if isinstance(answer, tuple):
        ids = encode(tokenizer, prompt)
        return ids + list(answer), len(ids)
    return prompt_and_target(tokenizer, prompt, " " + answer.strip())


def answer_queries(tokenizer, prompt: str, answer: Answer) -> list[Query]:
    """One query per token of ``answer`` after ``prompt`` (teacher-forced)."""
    whole, start = answer_tokens(tokenizer, prompt, answer)
    return [Query(whole[:position], whole[position]) for position in range(start, len(whole))]


def last_activations(
    model: nn.Module, anatomy: ModelAnatomy, ids: list[int], layers: list[int]
) -> dict[int, torch.Tensor]:
    """Each layer's MLP intermediate activation at the last position of ``ids``; raises
    :class:`UnsupportedArchitectureError` when it cannot be read there."""
    modules = {str(layer): anatomy.mlp_out_module(model, layer) for layer in layers}
    device = next(model.parameters()).device
    with torch.no_grad(), capture_inputs(modules, stop_after=str(max(layers))) as got:
        run_until_stop(lambda: model(input_ids=torch.tensor([ids], device=device)))
    out = {}
    for layer in layers:
        width = anatomy.intermediate_size(model)
        captured = got.get(str(layer))
        if captured is None or captured.ndim != 3 or captured.shape[-1] != width:
            name = anatomy.mlp_out_name(layer)
            seen = "never called" if captured is None else f"called with {tuple(captured.shape)}"
            raise UnsupportedArchitectureError(
                f"KN reads each MLP's intermediate activation as the input of its output "
                f"projection, but {name} was {seen} in a forward pass (expected a "
                f"(batch, sequence, {width}) input): this model's MLP does not pass its "
                "activation through that module. Pass mlp_out_module=<path, relative to a "
                "block, of the projection whose input is the activation>, or use another "
                "editor."
            )
        out[layer] = captured[0, -1].detach().float()
    return out


def prefix_cache(model: nn.Module, ids: list[int]):
    """The key-value cache of every token of ``ids`` but the last; ``None`` for a
    one-token input or a model that returns no cache object (a legacy tuple cache of an
    older transformers release cannot be repeated over the points)."""
    if len(ids) < 2:
        return None
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids[:-1]], device=input_device(model)), use_cache=True)
    for name in reversed(CACHE_KWARGS):  # the current name first: the old one warns
        cache = getattr(out, name, None)
        if hasattr(cache, "batch_repeat_interleave"):
            return cache
    return None


def _cache_keyword(model: nn.Module) -> str:
    """The keyword ``model``'s forward takes its key-value cache under."""
    accepted = inspect.signature(model.forward).parameters
    return next((name for name in CACHE_KWARGS if name in accepted), CACHE_KWARGS[0])


def _points_logits(model: nn.Module, ids: list[int], points: int, prefix) -> torch.Tensor:
    """Next-token logits at the end of ``ids`` for ``points`` copies of it, run against a
    copy of ``prefix`` (only the last token is computed) when one is given."""
    device = input_device(model)
    if prefix is None:
        return model(input_ids=torch.tensor([ids] * points, device=device)).logits[:, -1]
    cache = copy.deepcopy(prefix)
    cache.batch_repeat_interleave(points)
    last = torch.tensor([ids[-1:]] * points, device=device)
    keyword = {_cache_keyword(model): cache}
    return model(input_ids=last, use_cache=True, **keyword).logits[:, -1]


def layer_attribution(
    model: nn.Module,
    module: nn.Module,
    query: Query,
    activation: torch.Tensor,
    settings: AttributionSettings,
    prefix=None,
) -> torch.Tensor:
    """Integrated-gradients attribution of every unit of one layer (``(width,)``);
    ``prefix`` is :func:`prefix_cache` of ``query.ids`` (``None``: whole prompt per point)."""
    device = activation.device  # the layer's device; the token ids go to the input's
    scales = torch.arange(1, settings.steps + 1, device=device, dtype=torch.float32)
    scales = scales / settings.steps
    gradient_sum = torch.zeros_like(activation)
    for chunk in scales.split(settings.steps_per_batch):
        scaled = (chunk[:, None] * activation[None, :]).requires_grad_(True)
        with torch.enable_grad(), replace_last_input(module, scaled):
            logits = _points_logits(model, query.ids, len(chunk), prefix).float()
            probability = logits.softmax(dim=-1)[:, query.token].sum()
            (gradient,) = torch.autograd.grad(probability, scaled)
        gradient_sum += gradient.sum(dim=0)
    return activation * gradient_sum / settings.steps


def prompt_attribution(
    model: nn.Module, anatomy: ModelAnatomy, queries: list[Query], settings: AttributionSettings
) -> torch.Tensor:
    """Attribution of every neuron of ``settings.layers`` (``(layers, width)``), averaged
    over the answer's tokens."""
    layers = list(settings.layers)
    total = None
    for query in queries:
        activations = last_activations(model, anatomy, query.ids, layers)
        prefix = prefix_cache(model, query.ids) if settings.cached else None
        scores = torch.stack(
            [
                layer_attribution(
                    model,
                    anatomy.mlp_out_module(model, layer),
                    query,
                    activations[layer],
                    settings,
                    prefix,
                ).cpu()
                for layer in layers
            ]
        )
        total = scores if total is None else total + scores
    return total / len(queries)


def coarse_neurons(scores: torch.Tensor, layers: list[int], threshold: float) -> list[Neuron]:
    """Neurons whose attribution exceeds ``threshold`` times the largest one (none when
    no attribution is positive)."""
    top = float(scores.max())
    if top <= 0:
        return []
    rows, units = torch.nonzero(scores > threshold * top, as_tuple=True)
    return [(layers[int(r)], int(u)) for r, u in zip(rows, units, strict=True)]


def refined_neurons(per_prompt: list[list[Neuron]], p: float) -> list[Neuron]:
    """Neurons found for more than the share ``p`` of the prompts, in a fixed order."""
    counts = Counter(n for neurons in per_prompt for n in set(neurons))
    return sorted(n for n, count in counts.items() if count > p * len(per_prompt))


def locate(
    model: nn.Module,
    tokenizer,
    anatomy: ModelAnatomy,
    prompts: list[str],
    answer: Answer,
    settings: AttributionSettings,
) -> list[Neuron]:
    """The knowledge neurons of ``answer`` after ``prompts`` (the same fact, phrased
    differently)."""
    per_prompt = []
    for prompt in prompts:
        queries = answer_queries(tokenizer, prompt, answer)
        scores = prompt_attribution(model, anatomy, queries, settings)
        per_prompt.append(
            coarse_neurons(scores, list(settings.layers), settings.adaptive_threshold)
        )
    return refined_neurons(per_prompt, settings.p)
