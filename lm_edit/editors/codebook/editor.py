"""GRACE (Hartvigsen et al., 2023, "Aging with GRACE: Lifelong Model Editing with Discrete
Key-Value Adaptors"), after EasyEdit's ``easyeditor/models/grace``.

One linear module of one block (the MLP output projection by default, ``module: mlp_in``
for the MLP input as EasyEdit uses on GPT-2 XL) is wrapped by a
:class:`~.adaptor.CodebookAdaptor`. Requests are edited one after another, also within a
batch: the module's input at the prompt's last token is the query; :mod:`.rules` decides
whether it becomes a new key, splits a conflicting one or widens one with the same
answer; then the chosen key's value (initialised at random, ``val_init: cold``, or to the
module's own output there, ``warm``) is trained with Adam for ``n_iter`` steps on the
mean negative log-likelihood of the target tokens, teacher-forced after the prompt.
The model's weights never change.

The first batch of a stream puts the adaptor in place (recorded with
``record.set_module``, so undo puts the original module object back); later batches add
keys to the same adaptor and record its codebook before changing it
(``record.on_undo``), so undoing a later batch removes only that batch's keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lm_edit.core.anatomy import is_transposed, weight_as_out_in
from lm_edit.core.arguments import argument
from lm_edit.core.record import EditRecord
from lm_edit.core.tokens import prompt_and_target
from lm_edit.core.training import frozen, seeded, target_nll, teacher_forced
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.codebook.adaptor import CodebookAdaptor
from lm_edit.editors.codebook.rules import place
from lm_edit.editors.layers import mlp_module_path, one_block


@dataclass(frozen=True)
class GraceConfig(EditorConfig):
    """Hyperparameters of GRACE (documented in editors/README.md). Without ``layer`` the
    block ``round(layer_fraction · depth)`` is wrapped (EasyEdit's layer 27 of 32 on
    Llama-2-7B)."""

    layer: int | None = argument(None, ge=0, help="block whose module is wrapped")
    layer_fraction: float = argument(0.84, ge=0, le=1, help="block as a fraction of depth")
    module: Literal["mlp_out", "mlp_in"] = "mlp_out"
    eps: float = argument(1.0, gt=0, help="initial deferral radius of a new key")
    eps_expand: Literal["coverage", "moving_average"] = "coverage"
    val_init: Literal["cold", "warm"] = "cold"
    edit_lr: float = argument(1.0, gt=0, help="Adam learning rate of a value")
    n_iter: int = argument(50, ge=1, help="Adam steps per edit")


@register_editor("grace")
class GraceEditor(Editor):
    """Adds keys and trained values to a codebook adaptor around one module."""

    config_class = GraceConfig
    config: GraceConfig
    quick_settings = {"n_iter": 25}

    def module_path(self, model: nn.Module) -> str:
        """Path of the wrapped module (validated against the model's depth)."""
        depth = self.anatomy.num_layers(model)
        layer = one_block(self.config.layer, self.config.layer_fraction, depth, "GRACE")
        return mlp_module_path(self.anatomy, layer, self.config.module)

    def adaptor(self, model: nn.Module, record: EditRecord) -> CodebookAdaptor:
        """The adaptor at the chosen module, put in place on the first batch."""
        path = self.module_path(model)
        current = model.get_submodule(path)
        if isinstance(current, CodebookAdaptor):
            return current
        out_width, in_width = weight_as_out_in(current, is_transposed(current)).shape
        adaptor = CodebookAdaptor(current, int(in_width), int(out_width))
        record.set_module(model, path, adaptor)
        return adaptor

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Edit ``requests`` one after another into the codebook."""
        adaptor = self.adaptor(model, record)
        before = adaptor.snapshot()
        record.on_undo(
            f"GRACE codebook: back to {len(before.labels)} keys", lambda: adaptor.restore(before)
        )
        device = next(model.parameters()).device
        actions, losses = [], []
        with frozen(model), seeded(self.seed, device):
            for request in requests:
                action, loss = self._edit_one(model, tokenizer, adaptor, request)
                actions.append(action)
                losses.append(round(loss, 4))
        record.details.update(
            codebook_module=self.module_path(model),
            codebook_keys=len(adaptor),
            key_actions=actions,
            train_loss=losses,
        )

    def _edit_one(
        self, model: nn.Module, tokenizer, adaptor: CodebookAdaptor, request: EditRequest
    ) -> tuple[str, float]:
        device = next(model.parameters()).device
        whole, start = prompt_and_target(
            tokenizer, request.prompt, " " + request.target_new.strip()
        )
        ids = torch.tensor([whole], device=device)
        query = _input_at(model, adaptor, ids[:, :start], start - 1)
        if self.config.val_init == "warm":
            with torch.no_grad():
                value = adaptor.layer(query.to(next(adaptor.layer.parameters()).dtype))
        else:
            value = torch.rand(adaptor.values.shape[1], device=device)
        label = request.target_new.strip()
        placement = place(
            adaptor.keys, adaptor.radii, adaptor.labels, query, label, self.config.eps
        )
        row = adaptor.insert(
            placement, query, label, value, self.config.eps, self.config.eps_expand
        )
        loss = _train_row(
            model, adaptor, row, ids[:, :-1], teacher_forced(start, whole[start:]), self.config
        )
        return placement.action, loss


def _input_at(
    model: nn.Module, adaptor: CodebookAdaptor, ids: torch.Tensor, position: int
) -> torch.Tensor:
    """The adaptor's input at ``position`` of the one sequence ``ids``."""
    seen: list[torch.Tensor] = []

    def capture(module, args):
        seen.append(args[0][0, position].detach().float().clone())

    handle = adaptor.register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        handle.remove()
    return seen[0]


def _train_row(
    model: nn.Module,
    adaptor: CodebookAdaptor,
    row: int,
    ids: torch.Tensor,
    span,
    config: GraceConfig,
) -> float:
    """Train value ``row`` (only it) with Adam on the target NLL; the last loss."""
    values = adaptor.values
    values.requires_grad_(True)
    keep = torch.zeros(values.shape[0], 1, device=values.device)
    keep[row] = 1.0
    optimiser = torch.optim.Adam([values], lr=config.edit_lr)
    loss = torch.tensor(float("nan"))
    try:
        with torch.enable_grad():
            for _ in range(config.n_iter):
                optimiser.zero_grad()
                logits = model(input_ids=ids).logits
                loss = target_nll(F.log_softmax(logits.float(), dim=-1), [span])
                loss.backward()
                if values.grad is not None:
                    values.grad.mul_(keep)
                optimiser.step()
    finally:
        values.requires_grad_(False)
        values.grad = None
    return float(loss.detach())
