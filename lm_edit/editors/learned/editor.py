"""MEND (Mitchell et al., ICLR 2022, "Fast Model Editing at Scale"), after EasyEdit's
``easyeditor/trainer/algs/MEND.py`` and ``models/mend``: a trained network
(:mod:`.network`) turns the gradient of the edit loss into a weight edit.

Each batch: the target NLL of every request (its prompt followed by ``" " + target_new``,
teacher-forced) is back-propagated once through the unedited weights; hooks on the edited
modules (by default the MLP input and output projections of the last three blocks) record
each weight's input ``u`` and output gradient ``δ`` at every token position; the network
from ``editor_checkpoint`` (a folder written by ``lm-edit train mend``) maps them to
``ũ, δ̃``; and each weight becomes ``W - lr_scale · α · Σ_t δ̃_t ũ_tᵀ`` (``α`` the learned
step size of that weight). The weights are snapshotted first, so undo is exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lm_edit.core.arguments import argument
from lm_edit.core.record import EditRecord
from lm_edit.core.training import frozen
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.layers import check_module_kinds
from lm_edit.editors.learned.checkpoint import (
    MEND_CHECKPOINT,
    CheckpointKind,
    build_network,
    check_identity,
    model_identity,
    read_checkpoint,
)
from lm_edit.editors.learned.factors import (
    EditedWeight,
    add_change,
    edited_weights,
    gradient_factors,
    last_blocks,
    request_rows,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MendConfig(EditorConfig):
    """Hyperparameters of MEND editing (documented in editors/README.md); the network's
    own settings come from the checkpoint."""

    editor_checkpoint: str | None = argument(None, help="folder written by lm-edit train mend")
    layers: tuple[int, ...] = argument((), ge=0, help="blocks edited; empty: the last layer_count")
    layer_count: int = argument(3, ge=1, help="blocks edited when layers is empty")
    modules: tuple[Literal["mlp_in", "mlp_out"], ...] = ("mlp_in", "mlp_out")
    lr_scale: float = argument(1.0, gt=0, help="multiplies the learned step sizes")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_module_kinds(type(self).__name__, self.modules, "mlp_in and/or mlp_out")


def chosen_weights(model: nn.Module, anatomy, config: MendConfig) -> list[EditedWeight]:
    """The weights ``config`` edits on ``model``."""
    layers = last_blocks(anatomy.num_layers(model), config.layers, config.layer_count)
    return edited_weights(model, anatomy, layers, config.modules)


@register_editor("mend")
class MendEditor(Editor):
    """Edits the chosen weights in one step with a trained gradient transform."""

    config_class = MendConfig
    config: MendConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.network: nn.Module | None = None
        self.weights: list[EditedWeight] = []

    checkpoint_kind: CheckpointKind = MEND_CHECKPOINT
    """The checkpoints this editor reads."""

    def build_network(self, checkpoint: dict, device: torch.device) -> nn.Module:
        """The trained network a checkpoint of :attr:`checkpoint_kind` holds."""
        return build_network(checkpoint, device)

    def prepare(self, model: nn.Module, tokenizer) -> None:
        """Load the network once, after checking it was trained for this model and these
        weights."""
        if self.network is not None:
            return
        kind = self.checkpoint_kind
        label = kind.editor.upper()
        folder = self.config.editor_checkpoint
        if folder is None:
            raise ValueError(
                f"editor={self.name!r} needs a trained {label} network: pass "
                f"editor_checkpoint=<folder>, a folder written by `{kind.train_hint}`."
            )
        weights = chosen_weights(model, self.anatomy, self.config)
        checkpoint = read_checkpoint(folder, kind)
        identity = model_identity(model, weights)
        check_identity(checkpoint["base"], identity, f"editor_checkpoint={folder!r}", kind)
        if checkpoint["base"].get("weights_digest") != identity["weights_digest"]:
            logger.warning(
                "%s: %s was trained on a model with other weights (same shapes); the "
                "network may not transfer.",
                label,
                folder,
            )
        self.network = self.build_network(checkpoint, next(model.parameters()).device)
        self.network.requires_grad_(False)
        self.weights = weights
        logger.info("%s: network from %s (step %d)", label, folder, checkpoint["step"])

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Compute the factors of the batch's edit loss and apply the transformed update."""
        assert self.network is not None
        with frozen(model):
            loss, factors = gradient_factors(model, self.weights, request_rows(tokenizer, requests))
            with torch.no_grad():
                norms = self.apply_deltas(model, record, self.network.deltas(factors))
        record.details.update(edit_loss=round(loss, 4), update_norms=norms)

    def apply_deltas(
        self, model: nn.Module, record: EditRecord, deltas: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        """Subtract ``lr_scale`` times each (out, in) delta from its weight, snapshotting
        the weight first; the changes' norms."""
        return {
            weight.name: add_change(
                model, record, weight, -self.config.lr_scale * deltas[weight.name]
            )
            for weight in self.weights
        }
