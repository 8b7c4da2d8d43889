"""UltraEdit (Gu et al., TMLR 2026, "UltraEdit: Training-, Subject-, and Memory-Free
Lifelong Editing in Language Models"), after the authors' ``editor/ultraedit.py``.

A turn is one batch of the stream. Its requests, longest first, go through the model in
passes of ``requests_per_pass`` (the reference's ``dataset.batch_size``): each pass
back-propagates the mean NLL of its target tokens (teacher-forced after the prompt)
through the unedited weights, and for every edited weight keeps, at each position that
predicts a target token, the weight's input ``k`` and the loss's gradient ``g`` at its
output. The rows ``[k, g]`` update a lifelong normaliser (one per weight shape, shared by
weights of equal shape as in the reference) that lives for the whole stream; then each
weight changes by the ridge solution of :mod:`.update`. Nothing is trained and nothing
but the normalisers' statistics is kept between turns.

Every weight is snapshotted and the normalisers' statistics recorded before they change,
so undo of any turn is exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lm_edit.core.anatomy import is_transposed
from lm_edit.core.arguments import argument
from lm_edit.core.record import EditRecord
from lm_edit.core.training import frozen, token_mean_nll
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.layers import check_module_kinds, resolve_layers
from lm_edit.editors.learned.factors import (
    EditedWeight,
    Rows,
    add_change,
    edited_weight,
    edited_weights,
    request_rows,
    weight_signals,
)
from lm_edit.editors.lifelong.normalizer import LifelongNormalizer
from lm_edit.editors.lifelong.update import ridge_solve, target_changes

logger = logging.getLogger(__name__)

ModuleKind = Literal["mlp_gate", "mlp_in", "mlp_out"]


@dataclass(frozen=True)
class UltraEditConfig(EditorConfig):
    """Hyperparameters of UltraEdit (documented in editors/README.md). Without ``layers``
    the ``layer_count`` blocks ending at ``round(layer_fraction · depth)`` are edited."""

    layers: tuple[int, ...] = argument((), ge=0, help="blocks edited; empty: by layer_fraction")
    layer_fraction: float = argument(0.93, ge=0, le=1, help="last edited block / depth")
    layer_count: int = argument(9, ge=1, help="blocks edited when layers is empty")
    modules: tuple[ModuleKind, ...] = ("mlp_out",)
    edit_modules: tuple[str, ...] = argument((), help="module paths; replace layers and modules")
    lr: float = argument(1e-6, gt=0, help="scale of the target output change")
    ridge: float = argument(1.0, gt=0, help="L2 penalty of the closed-form solve")
    requests_per_pass: int = argument(10, ge=1, help="requests per forward/backward pass")
    token_positions: Literal["answer", "all"] = "answer"

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        check_module_kinds(owner, self.modules, "mlp_gate, mlp_in and/or mlp_out")
        paths = tuple(path.strip() for path in self.edit_modules if path.strip())
        if len(set(paths)) != len(paths):
            raise ValueError(f"{owner}: edit_modules={list(paths)} names a module twice.")
        object.__setattr__(self, "edit_modules", paths)
        default_modules = type(self).__dataclass_fields__["modules"].default
        if paths and (self.layers or self.modules != default_modules):
            raise ValueError(
                f"{owner}: edit_modules names the edited modules itself, so layers and "
                "modules would be ignored; give one or the other (edit_modules=[] chooses "
                "by layers and modules, also on models whose family sets edit_modules)."
            )


def chosen_weights(model: nn.Module, anatomy, config: UltraEditConfig) -> list[EditedWeight]:
    """The weights ``config`` edits on ``model``: ``edit_modules`` when given, else
    ``modules`` in each chosen block."""
    if config.edit_modules:
        weights = [linear_at(model, anatomy, path) for path in config.edit_modules]
    else:
        layers = resolve_layers(config, anatomy.num_layers(model))
        weights = edited_weights(model, anatomy, layers, config.modules)
    names = [w.name for w in weights]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"ultraedit: {', '.join(repeated)} would be edited twice (two choices resolve to "
            "the same weight); choose each weight once."
        )
    return weights


def linear_at(model: nn.Module, anatomy, path: str) -> EditedWeight:
    """The weight of the linear layer at ``path`` (one of ``edit_modules``), or an error
    naming the path and what to give instead."""
    hint = "name linear layers by their full path, e.g. model.layers.20.mlp.down_proj."
    try:
        module = model.get_submodule(path) if path else None
    except AttributeError:
        module = None
    if module is None:
        raise ValueError(f"edit_modules: the model has no module {path!r}; {hint}")
    weight = getattr(module, "weight", None)
    linear = isinstance(module, nn.Linear) or is_transposed(module)
    if not linear or not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(
            f"edit_modules: {path!r} is a module of type {type(module).__name__}, not a "
            f"linear layer; {hint}"
        )
    return edited_weight(model, anatomy, path, transposed=is_transposed(module))


def row_positions(rows: Rows, token_positions: str) -> list[list[int]]:
    """Per row, the positions whose input and gradient UltraEdit keeps: those predicting a
    target token (``answer``), or every real token (``all``)."""
    if token_positions == "all":
        return [list(range(length)) for length in rows.batch.lengths]
    return [list(positions) for positions, _ in rows.spans]


def longest_first(tokenizer, requests: list[EditRequest]) -> list[EditRequest]:
    """The turn's requests ordered by input length, longest first (stable), as the
    reference's loader orders a turn before cutting it into passes."""
    lengths = [request_rows(tokenizer, [r]).batch.lengths[0] for r in requests]
    order = sorted(range(len(requests)), key=lambda i: -lengths[i])
    return [requests[i] for i in order]


@register_editor("ultraedit")
class UltraEditEditor(Editor):
    """Closed-form lifelong editing with running statistics; no training, no memory."""

    config_class = UltraEditConfig
    config: UltraEditConfig
    quick_settings = {"layers": (1, 2), "lr": 0.5, "token_positions": "all"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.normalizers: dict[tuple[int, int], LifelongNormalizer] = {}

    def reset(self) -> None:
        """Forget the lifelong statistics (a new stream starts from none)."""
        self.normalizers = {}

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """One turn: collect the rows of every pass, fold them into the statistics, then
        change each weight by its ridge solution."""
        weights = chosen_weights(model, self.anatomy, self.config)
        self.record_statistics(record, weights)
        with frozen(model):
            losses, rows = self.collect(model, tokenizer, requests, weights)
        norms = {}
        with torch.no_grad():
            for weight in weights:
                keys, grads = rows[weight.name]
                normalizer = self.normalizers[weight.shape]
                if normalizer.count < 2:
                    logger.warning(
                        "ultraedit: %s: one row seen since the stream began, so its "
                        "standardised row is zero and this turn leaves the weight as it is; "
                        "edit in turns of several requests (edit_batch_size) or with "
                        "token_positions=all.",
                        weight.name,
                    )
                targets = target_changes(keys, grads, normalizer, self.config.lr)
                change = ridge_solve(keys, targets, self.config.ridge).T
                if not torch.isfinite(change).all():
                    raise FloatingPointError(
                        f"ultraedit: the change of {weight.name} is not finite (inputs or "
                        "gradients overflowed); the turn is undone. Lower lr or edit in "
                        "float32."
                    )
                norms[weight.name] = add_change(model, record, weight, change)
        record.details.update(
            edit_loss=round(sum(losses) / len(losses), 4),
            rows=int(next(iter(rows.values()))[0].shape[0]),
            update_norms=norms,
        )

    def record_statistics(self, record: EditRecord, weights: list[EditedWeight]) -> None:
        """Record the statistics as they are, so undo of this turn restores them (and
        forgets the shapes this turn saw first)."""
        saved = {shape: n.state() for shape, n in self.normalizers.items()}

        def take_back() -> None:
            self.normalizers = {shape: LifelongNormalizer(state) for shape, state in saved.items()}

        record.on_undo("UltraEdit: the lifelong statistics before this turn", take_back)
        for weight in weights:
            self.normalizers.setdefault(weight.shape, LifelongNormalizer())

    def collect(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], weights: list[EditedWeight]
    ) -> tuple[list[float], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Each pass's loss, and per weight the turn's input and gradient rows (float32),
        folded into the statistics pass by pass."""
        ordered = longest_first(tokenizer, requests)
        size = self.config.requests_per_pass
        losses: list[float] = []
        kept: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {w.name: [] for w in weights}
        for start in range(0, len(ordered), size):
            rows = request_rows(tokenizer, ordered[start : start + size])
            loss, signals = weight_signals(model, weights, rows, token_mean_nll)
            losses.append(loss)
            positions = row_positions(rows, self.config.token_positions)
            for weight in weights:
                inputs, grads = signals[weight.name]
                if tuple(inputs.shape[:2]) != tuple(rows.batch.input_ids.shape):
                    raise ValueError(
                        f"ultraedit: {weight.module} sees inputs of shape "
                        f"{tuple(inputs.shape)}, not (rows, tokens, features) of the batch "
                        f"{tuple(rows.batch.input_ids.shape)}; edit layers that every token "
                        "passes through (not routed experts)."
                    )
                keys = torch.cat([inputs[r, p] for r, p in enumerate(positions)]).float()
                outs = torch.cat([grads[r, p] for r, p in enumerate(positions)]).float()
                self.normalizers[weight.shape].update(torch.cat((keys, outs), -1))
                kept[weight.name].append((keys, outs))
        return losses, {
            name: (torch.cat([k for k, _ in parts]), torch.cat([g for _, g in parts]))
            for name, parts in kept.items()
        }
