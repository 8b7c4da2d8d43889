"""FT-L and FT-M: fine-tune the MLP output projection of chosen layers on the edit
requests (the fine-tuning baselines of the ROME paper and of EasyEdit).

Every parameter of each chosen layer's MLP output module (weight, and bias where it has
one, as EasyEdit's name match takes both) is trained with Adam on the objective of
:mod:`.training`: ``prompt_last`` for FT-L, ``target_new`` for FT-M. With
``norm_constraint`` set, every parameter is clamped to ``original ± norm_constraint``
(an L∞ bound on the change) after each step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lm_edit.core.arguments import argument
from lm_edit.core.record import EditRecord
from lm_edit.core.training import frozen, seeded
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.finetune.training import TrainingConfig, train
from lm_edit.editors.layers import LayerChoice, resolve_layers


@dataclass(frozen=True)
class FineTuneConfig(LayerChoice, TrainingConfig, EditorConfig):
    """Hyperparameters of FT-L / FT-M (documented in editors/README.md). Without family
    settings the one layer ``round(0.66 · depth)`` is tuned (EasyEdit's layer 21 of 32)."""

    layer_fraction: float = argument(0.66, ge=0, le=1)
    norm_constraint: float | None = argument(None, gt=0, help="L∞ bound on the change")


@register_editor("finetune")
class FineTuneEditor(Editor):
    """Trains the MLP output weights of the chosen layers in place (a plain weight edit,
    undone by restoring the snapshots)."""

    config_class = FineTuneConfig
    config: FineTuneConfig
    quick_settings = {"lr": 0.02, "num_steps": 15, "norm_constraint": 0.2}

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Train the chosen weights on ``requests``."""
        layers = resolve_layers(self.config, self.anatomy.num_layers(model))
        parameters = {
            f"{self.anatomy.mlp_out_name(layer)}.{name}": parameter
            for layer in layers
            for name, parameter in self.anatomy.mlp_out_module(model, layer).named_parameters()
        }
        for name in parameters:
            record.snapshot(model, name)
        device = next(model.parameters()).device
        with frozen(model), seeded(self.seed, device):
            for parameter in parameters.values():
                parameter.requires_grad_(True)
            constrain = None
            if self.config.norm_constraint is not None:
                constrain = _linf_clamp(list(parameters.values()), self.config.norm_constraint)
            result = train(
                model, tokenizer, requests, list(parameters.values()), self.config, constrain
            )
        record.details.update(
            layers=layers, train_loss=round(result.loss, 4), train_passes=result.passes
        )


def _linf_clamp(parameters: list[torch.Tensor], bound: float):
    """A step callback keeping every parameter within ``bound`` of its current value."""
    originals = [p.detach().clone() for p in parameters]

    @torch.no_grad()
    def clamp() -> None:
        for parameter, original in zip(parameters, originals, strict=True):
            torch.clamp_(parameter, min=original - bound, max=original + bound)

    return clamp
