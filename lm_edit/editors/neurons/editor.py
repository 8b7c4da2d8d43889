"""KN: update a fact by rewriting its knowledge neurons' value vectors (Dai et al., 2022).

For each request the knowledge neurons of the fact the model holds (``target_true``, or
the model's own next token when the request has none) are located by
:mod:`.attribution` on the prompt (and, with ``refine``, its rephrases). Every located
neuron's value vector, its column of the MLP output projection, then becomes::

    value - erase_scale · e(old answer) + write_scale · e(new target)

where ``e(answer)`` sums the embeddings of the answer's tokens (the output embedding,
i.e. the LM head's rows, by default; ``embedding: input`` takes the input embedding).
With ``value_sign: activation`` the change is multiplied by the sign of the neuron's
activation at the prompt's last position, so that every located neuron moves the output
toward the new target there (the paper's rule assumes positive activations, which gated
MLPs such as SwiGLU do not have). All neurons of a batch are located on the model as it
was before the batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lm_edit.core.anatomy import weight_as_out_in
from lm_edit.core.arguments import argument
from lm_edit.core.record import EditRecord
from lm_edit.core.tokens import encode
from lm_edit.core.training import frozen
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.neurons.attribution import (
    Answer,
    AttributionSettings,
    Neuron,
    answer_tokens,
    last_activations,
    locate,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnowledgeNeuronsConfig(EditorConfig):
    """Hyperparameters of KN (documented in editors/README.md)."""

    layers: tuple[int, ...] = argument((), ge=0, help="blocks searched; empty: all")
    steps: int = argument(20, ge=1, help="integrated-gradients points")
    steps_per_batch: int = argument(20, ge=1, help="points per forward pass")
    adaptive_threshold: float = argument(0.2, gt=0, le=1, help="share of the largest score")
    refine: bool = argument(False, help="also locate on the rephrases; keep shared neurons")
    p: float = argument(0.4, ge=0, lt=1, help="refine: share of prompts a neuron must exceed")
    erase_scale: float = argument(1.0, ge=0, help="λ1: weight of the old answer's embedding")
    write_scale: float = argument(8.0, ge=0, help="λ2: weight of the new target's embedding")
    embedding: Literal["output", "input"] = "output"
    value_sign: Literal["fixed", "activation"] = argument(
        "fixed", help="fixed: the paper's rule; activation: signed by the neuron's activation"
    )


@dataclass(frozen=True)
class NeuronPlan:
    """What one request's edit writes: its neurons, the old answer they were located for,
    and the sign (+1 or -1) each neuron's change is written with."""

    neurons: list[Neuron]
    old: Answer
    signs: dict[Neuron, float]


@register_editor("neurons")
class KnowledgeNeuronsEditor(Editor):
    """Locates knowledge neurons by integrated gradients and rewrites their value vectors
    in place (a plain weight edit, undone by restoring the snapshots)."""

    config_class = KnowledgeNeuronsConfig
    config: KnowledgeNeuronsConfig
    quick_settings = {"steps": 4, "steps_per_batch": 4, "write_scale": 8.0}

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Locate every request's neurons, then rewrite their value vectors."""
        settings = self.settings(model)
        with frozen(model):
            plans = [self._plan(model, tokenizer, request, settings) for request in requests]
        for request, plan in zip(requests, plans, strict=True):
            if not plan.neurons:
                logger.warning("KN found no knowledge neurons for case %s.", request.case_id)
            self._write(model, tokenizer, request, plan, record)
        record.details.update(
            neurons={r.case_id: len(p.neurons) for r, p in zip(requests, plans, strict=True)},
            layers_touched=sorted({layer for p in plans for layer, _ in p.neurons}),
        )

    def settings(self, model: nn.Module) -> AttributionSettings:
        """The attribution settings, with the searched layers checked against the model."""
        depth = self.anatomy.num_layers(model)
        layers = self.config.layers or tuple(range(depth))
        bad = [layer for layer in layers if layer >= depth]
        if bad:
            raise ValueError(f"layers={bad} is outside the model, which has layers 0..{depth - 1}.")
        config = self.config
        return AttributionSettings(
            tuple(sorted(set(layers))),
            config.steps,
            config.steps_per_batch,
            config.adaptive_threshold,
            config.p,
        )

    def _plan(
        self, model: nn.Module, tokenizer, request: EditRequest, settings: AttributionSettings
    ) -> NeuronPlan:
        """The request's knowledge neurons, the old answer they were located for and the
        sign each change is written with."""
        old = request.target_true or self._greedy_token(model, tokenizer, request.prompt)
        prompts = [request.prompt, *request.rephrases] if self.config.refine else [request.prompt]
        neurons = locate(model, tokenizer, self.anatomy, prompts, old, settings)
        signs = {neuron: 1.0 for neuron in neurons}
        if self.config.value_sign == "activation" and neurons:
            layers = sorted({layer for layer, _ in neurons})
            ids = encode(tokenizer, request.prompt)
            activations = last_activations(model, self.anatomy, ids, layers)
            signs = {
                (layer, unit): -1.0 if activations[layer][unit] < 0 else 1.0
                for layer, unit in neurons
            }
        return NeuronPlan(neurons, old, signs)

    @staticmethod
    def _greedy_token(model: nn.Module, tokenizer, prompt: str) -> tuple[int]:
        """The model's most likely next token after ``prompt``, as its id (its text need not
        start a word, so it is not tokenised again)."""
        device = next(model.parameters()).device
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([encode(tokenizer, prompt)], device=device))
        return (int(logits.logits[0, -1].argmax()),)

    def _embedding(self, model: nn.Module, tokenizer, prompt: str, answer: Answer) -> torch.Tensor:
        """Sum of the embeddings of ``answer``'s tokens (as tokenised after ``prompt``)."""
        whole, start = answer_tokens(tokenizer, prompt, answer)
        if self.config.embedding == "input":
            table = model.get_input_embeddings().weight
        else:
            table = self.anatomy.lm_head_module(model).weight
        return table[whole[start:]].detach().float().sum(dim=0)

    def _write(
        self,
        model: nn.Module,
        tokenizer,
        request: EditRequest,
        plan: NeuronPlan,
        record: EditRecord,
    ) -> None:
        """Add the (signed) value change to every neuron's column of the MLP output
        projection."""
        config = self.config
        change = config.write_scale * self._embedding(
            model, tokenizer, request.prompt, request.target_new
        ) - config.erase_scale * self._embedding(model, tokenizer, request.prompt, plan.old)
        for layer in sorted({layer for layer, _ in plan.neurons}):
            units = [unit for n_layer, unit in plan.neurons if n_layer == layer]
            module = self.anatomy.mlp_out_module(model, layer)
            record.snapshot(model, f"{self.anatomy.mlp_out_name(layer)}.weight")
            weight = weight_as_out_in(module, self.anatomy.transposed)
            index = torch.tensor(units, device=weight.device)
            signs = torch.tensor([plan.signs[(layer, u)] for u in units], device=weight.device)
            with torch.no_grad():
                column = change.to(device=weight.device, dtype=weight.dtype)[:, None]
                weight[:, index] += column * signs.to(weight.dtype)[None, :]
