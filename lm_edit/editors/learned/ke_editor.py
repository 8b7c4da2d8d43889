"""KE, KnowledgeEditor (De Cao et al., EMNLP 2021), after MEND's port of its authors' code
(``algs/efk.py``) and EasyEdit's KE settings: a network trained by ``lm-edit train ke``
(:mod:`.ke_network`) reads the edit's text and turns the gradient of its edit loss into
a change of each edited weight.

Each request of a batch is edited in turn, as the reference conditions on one edit at a
time: the target NLL of the request (its prompt followed by ``" " + target_new``) is
back-propagated through the current weights, the network maps each weight's gradient and
the edit's tokens to ``ΔW``, and ``W + lr_scale · ΔW`` is written. The weights edited are
MEND's (by default the MLP input and output projections of the last three blocks, the
reference's ``inner_params``), snapshotted first so undo is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lm_edit.core.arguments import argument
from lm_edit.core.record import EditRecord
from lm_edit.core.training import frozen
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import register_editor
from lm_edit.editors.learned.checkpoint import KE_CHECKPOINT, build_ke_network
from lm_edit.editors.learned.editor import MendConfig, MendEditor
from lm_edit.editors.learned.factors import condition_batch, gradient_factors, request_rows


@dataclass(frozen=True)
class KeConfig(MendConfig):
    """Hyperparameters of KE editing (documented in editors/README.md); the network's own
    settings come from the checkpoint."""

    editor_checkpoint: str | None = argument(None, help="folder written by lm-edit train ke")


@register_editor("ke")
class KeEditor(MendEditor):
    """Edits the chosen weights with a trained network conditioned on each edit's text."""

    config_class = KeConfig
    config: KeConfig
    checkpoint_kind = KE_CHECKPOINT

    def build_network(self, checkpoint: dict, device: torch.device) -> nn.Module:
        return build_ke_network(checkpoint, device)

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Edit with each request in turn, conditioned on its own tokens."""
        assert self.network is not None
        losses, norms = [], {}
        with frozen(model):
            for request in requests:
                loss, factors = gradient_factors(
                    model, self.weights, request_rows(tokenizer, [request])
                )
                with torch.no_grad():
                    deltas = self.network.deltas(factors, condition_batch(tokenizer, request))
                    norms = self.apply_deltas(model, record, deltas)
                losses.append(round(loss, 4))
        record.details.update(edit_loss=losses, update_norms=norms)
