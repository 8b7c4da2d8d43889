"""CaliNET (Dong et al., Findings of EMNLP 2022, "Calibrating Factual Knowledge in
Pretrained Language Models"), after the authors' reference code (dqxiu/CaliNet).

Each batch adds ``slots`` calibration memory slots beside the MLP of each chosen block
(the last block by default, as the reference's ``kb_layer 11`` of T5-base): an FFN of
``slots`` neurons in parallel to the original one, whose output is added to the MLP's
(see :mod:`.adaptor`). The slots' keys start as PyTorch's default for a linear layer
(uniform within ``±1/√width``) and their values at zero, so the new slots change nothing
until trained; biases stay zero (the reference's slots have none). Only the new slots
are trained, on the mean target NLL of the batch's requests (teacher-forced, padded
together), with Adafactor (no relative step, no parameter scaling) at a constant
learning rate after a linear warm-up, as the reference trainer; training stops once
every request's target is the model's prediction at each of its tokens, or after
``n_iter`` steps. The original weights never change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.optimization import Adafactor

from lm_edit.core.arguments import argument
from lm_edit.core.record import EditRecord
from lm_edit.core.tokens import Batch
from lm_edit.core.training import Span, frozen, seeded, target_nll
from lm_edit.data.requests import EditRequest
from lm_edit.editors.added_neurons.adaptor import (
    Activation,
    NeuronAdaptor,
    Pending,
    adaptor_at,
    mlp_path,
    readout,
)
from lm_edit.editors.added_neurons.sequences import all_predicted, edit_sequence, padded
from lm_edit.editors.base import Editor, EditorConfig, register_editor


@dataclass(frozen=True)
class CaliNetConfig(EditorConfig):
    """Hyperparameters of CaliNET (documented in editors/README.md). Without ``layers``
    the last block gets the slots."""

    layers: tuple[int, ...] = argument((), ge=0, help="blocks that get slots; empty: the last")
    slots: int = argument(64, ge=1, help="calibration memory slots per block and batch")
    activation: Activation = "model"
    lr: float = argument(1e-2, gt=0, help="Adafactor learning rate")
    warmup_steps: int = argument(100, ge=0, help="linear warm-up of the learning rate")
    weight_decay: float = argument(0.0, ge=0, help="Adafactor weight decay")
    n_iter: int = argument(5000, ge=1, help="most training steps per batch")


@register_editor("calinet")
class CaliNetEditor(Editor):
    """Adds trained calibration memory slots beside the MLPs of chosen blocks."""

    config_class = CaliNetConfig
    config: CaliNetConfig
    quick_settings = {"slots": 16, "warmup_steps": 10, "n_iter": 300}

    def layers(self, model: nn.Module) -> list[int]:
        """The blocks that get slots (checked against the model's depth)."""
        layers = list(self.config.layers) or [self.anatomy.num_layers(model) - 1]
        for layer in layers:
            mlp_path(self.anatomy, model, layer)
        return sorted(set(layers))

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Add and train one block of slots per chosen layer for the whole batch."""
        layers = self.layers(model)
        device = next(model.parameters()).device
        sequences = [edit_sequence(tokenizer, r) for r in requests]
        batch = padded(sequences, device)
        spans = [s.span for s in sequences]
        adaptors = [
            adaptor_at(model, self.anatomy, layer, self.config.activation, record, "CaliNET")
            for layer in layers
        ]
        with frozen(model), seeded(self.seed, device):
            pending = [_new_slots(a, self.config.slots, device) for a in adaptors]
            try:
                loss, steps = self._train(model, layers, batch, spans, adaptors, pending)
            finally:
                for adaptor in adaptors:
                    adaptor.pending = None
        for adaptor, (block, values) in zip(adaptors, pending, strict=True):
            adaptor.append(block.keys, block.biases, values)
        per_slot = sum(a.parameters_per_neuron() for a in adaptors)
        record.details.update(
            calibrated_modules=[mlp_path(self.anatomy, model, layer) for layer in layers],
            slot_activation=adaptors[0].activation_name,
            slots_added=self.config.slots * len(layers),
            slots_total=sum(len(a) for a in adaptors),
            added_parameters=self.config.slots * per_slot,
            train_steps=steps,
            train_loss=round(loss, 4),
        )

    def _train(
        self,
        model: nn.Module,
        layers: list[int],
        batch: Batch,
        spans: list[Span],
        adaptors: list[NeuronAdaptor],
        pending: list[tuple[Pending, torch.Tensor]],
    ) -> tuple[float, int]:
        """Train the new slots; (last loss, updates)."""
        trained = []
        for adaptor, (block, values) in zip(adaptors, pending, strict=True):
            adaptor.pending = block
            trained += [block.keys, values]
        logits_of = (
            readout(
                model, self.anatomy, adaptors[0], layers[0], batch.input_ids, batch.attention_mask
            )
            if len(layers) == 1
            else lambda: (
                model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            )
        )
        config = self.config
        optimiser = Adafactor(
            trained,
            lr=config.lr,
            weight_decay=config.weight_decay,
            scale_parameter=False,
            relative_step=False,
            warmup_init=False,
        )
        warmup = (
            torch.optim.lr_scheduler.LambdaLR(
                optimiser, lambda step: min(1.0, (step + 1) / config.warmup_steps)
            )
            if config.warmup_steps
            else None
        )
        loss = torch.tensor(float("nan"))
        updates = 0
        with torch.enable_grad():
            for _ in range(config.n_iter):
                optimiser.zero_grad()
                logits = logits_of()
                loss = target_nll(F.log_softmax(logits.float(), dim=-1), spans)
                if all_predicted(logits.detach(), spans):
                    break
                loss.backward()
                optimiser.step()
                if warmup is not None:
                    warmup.step()
                updates += 1
        return float(loss.detach()), updates


def _new_slots(
    adaptor: NeuronAdaptor, count: int, device: torch.device
) -> tuple[Pending, torch.Tensor]:
    """``count`` untrained slots for ``adaptor`` and their (trainable) values."""
    width = adaptor.keys.shape[1]
    bound = 1 / math.sqrt(width)
    keys = torch.empty(count, width, device=device).uniform_(-bound, bound).requires_grad_(True)
    biases = torch.zeros(count, device=device)
    values = torch.zeros(count, adaptor.values.shape[1], device=device, requires_grad=True)
    return Pending(keys, biases, lambda: values), values
