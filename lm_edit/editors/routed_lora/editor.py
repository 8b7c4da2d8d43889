"""MELO (Yu et al., AAAI 2024, "MELO: Enhancing Model Editing with Neuron-Indexed Dynamic
LoRA"), after the authors' code as EasyEdit ships it (``easyeditor/models/melo``).

One LoRA of rank ``num_block · rank_per_block`` (peft's LoRA layers) sits on the chosen
module of the blocks ``lora_layers``; its ranks are cut into ``num_block`` blocks of
``rank_per_block``. Each edit batch gets the next free block. The router module (the
same kind of module at block ``layer``, below every LoRA block) keys each request by its
output at the prompt's last token and files the key in the vector database
(:mod:`.database`) with the batch's block; at every pass the router sends each position
to a block or to none (:mod:`.routing`). The batch's block is then trained with Adam
(``edit_lr``, halved every ``lr_step`` steps, ``n_iter`` steps) on the mean NLL of the
target tokens, teacher-forced after the prompt. Blocks of earlier batches never change,
nor do the model's weights.

The first batch puts the router, the LoRA layers and a model pre-hook in place (undo
removes them, putting the original modules back); later batches record the database and
their block's ranks before changing them, so undoing one batch takes back exactly it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lm_edit.core.arguments import argument
from lm_edit.core.hooks import capture_outputs, run_until_stop, watch_cache
from lm_edit.core.record import EditRecord
from lm_edit.core.tokens import prompt_and_target
from lm_edit.core.training import frozen, seeded, target_nll, teacher_forced
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.layers import mlp_module_path
from lm_edit.editors.routed_lora.database import VectorDatabase
from lm_edit.editors.routed_lora.routing import RoutedRanks, RouterAdaptor, Routing

ADAPTER = "melo"
"""The adapter name inside every peft LoRA layer MELO adds."""


@dataclass(frozen=True)
class MeloConfig(EditorConfig):
    """Hyperparameters of MELO (documented in editors/README.md). Without ``layer`` the
    router is block ``round(layer_fraction · depth)`` (the reference's 35 of 48 on GPT-2
    XL); without ``lora_layers`` the LoRA sits on the two blocks after it."""

    layer: int | None = argument(None, ge=0, help="router block")
    layer_fraction: float = argument(0.73, ge=0, le=1, help="router block as a fraction of depth")
    lora_layers: tuple[int, ...] = argument((), ge=0, help="blocks with LoRA; empty: the next two")
    module: Literal["mlp_in", "mlp_out"] = "mlp_in"
    num_block: int = argument(350, ge=1, help="LoRA blocks (one per edit batch)")
    rank_per_block: int = argument(2, ge=1)
    init_radius: float = argument(0.5, gt=0, help="radius of a new cluster")
    edit_lr: float = argument(1e-3, gt=0, help="Adam learning rate")
    n_iter: int = argument(50, ge=1, help="Adam steps per batch")
    lr_step: int = argument(20, ge=1, help="steps between halvings of the learning rate")


@register_editor("melo")
class MeloEditor(Editor):
    """Trains one LoRA block per batch and files the batch's keys in a vector database."""

    config_class = MeloConfig
    config: MeloConfig
    quick_settings = {"n_iter": 20, "edit_lr": 0.05, "num_block": 8}

    def layers(self, model: nn.Module) -> tuple[int, list[int]]:
        """The router block and the LoRA blocks, checked against the model's depth."""
        depth = self.anatomy.num_layers(model)
        router = self.config.layer
        if router is None:
            router = max(0, min(depth - 3, round(self.config.layer_fraction * depth)))
        lora = list(self.config.lora_layers) or [router + 1, router + 2]
        outside = [b for b in [router, *lora] if b >= depth]
        if outside:
            raise ValueError(
                f"MELO: layer(s) {outside} are outside the model, which has layers "
                f"0..{depth - 1} (layer={router}, lora_layers={lora})."
            )
        if min(lora) <= router:
            raise ValueError(
                f"MELO: lora_layers={lora} must all be above the router layer={router}: the "
                "router chooses the block before the LoRA layers run."
            )
        return router, sorted(set(lora))

    def module_path(self, model: nn.Module, layer: int) -> str:
        """Path of the chosen module of block ``layer``."""
        return mlp_module_path(self.anatomy, layer, self.config.module)

    def router(self, model: nn.Module, record: EditRecord) -> RouterAdaptor:
        """The router, with the LoRA layers and the cache pre-hook, put in place on the
        first batch."""
        router_layer, lora_layers = self.layers(model)
        path = self.module_path(model, router_layer)
        current = model.get_submodule(path)
        if isinstance(current, RouterAdaptor):
            return current
        config = self.config
        routing = Routing(config.num_block, config.rank_per_block)
        adaptor = RouterAdaptor(current, VectorDatabase(config.init_radius), routing)
        for layer in lora_layers:
            target = self.module_path(model, layer)
            record.set_module(model, target, self._lora(model.get_submodule(target), routing))
        record.set_module(model, path, adaptor)
        watch = watch_cache(lambda extends: setattr(routing, "continuing", extends))
        record.add_hook(model, "", watch, pre=True, with_kwargs=True)
        adaptor.next_block = 0
        return adaptor

    def _lora(self, module: nn.Module, routing: Routing) -> nn.Module:
        """A peft LoRA layer of the full rank around ``module``, its ``lora_A`` routed;
        ``lora_A`` starts uniform in ±1/√rank (the reference's Kaiming init of an
        (in, rank) matrix), ``lora_B`` at zero, scaling 1."""
        from peft import LoraConfig
        from peft.tuners.lora.layer import dispatch_default
        from transformers.pytorch_utils import Conv1D

        rank = self.config.num_block * self.config.rank_per_block
        lora = LoraConfig(r=rank, lora_alpha=rank, fan_in_fan_out=isinstance(module, Conv1D))
        wrapper = dispatch_default(module, ADAPTER, lora, r=rank, lora_alpha=rank, lora_dropout=0.0)
        if wrapper is None:
            raise ValueError(f"MELO: peft's LoRA cannot wrap a {type(module).__name__}.")
        linear = wrapper.lora_A[ADAPTER]
        with torch.no_grad():
            bound = 1.0 / rank**0.5
            linear.weight.uniform_(-bound, bound)
        wrapper.lora_A[ADAPTER] = RoutedRanks(linear, routing)
        wrapper.requires_grad_(False)
        return wrapper

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """File ``requests``' keys with the next block and train that block on them."""
        device = next(model.parameters()).device
        with frozen(model), seeded(self.seed, device):
            adaptor = self.router(model, record)
            block = adaptor.next_block
            if block >= self.config.num_block:
                raise ValueError(
                    f"MELO: all num_block={self.config.num_block} LoRA blocks are used (one "
                    "per edit batch); pass a larger num_block or a larger edit_batch_size."
                )
            self._record_batch(model, adaptor, block, record)
            adaptor.next_block = block + 1
            rows = [_row(tokenizer, r, device) for r in requests]
            actions = [
                adaptor.database.insert(
                    _router_output(model, adaptor, ids[:, :start], start - 1),
                    r.target_new.strip(),
                    block,
                )
                for r, (ids, start, _) in zip(requests, rows, strict=True)
            ]
            loss = self._train(model, block, rows)
        record.details.update(
            melo_block=block,
            melo_clusters=len(adaptor.database),
            key_actions=actions,
            train_loss=round(loss, 4),
        )

    def _record_batch(
        self, model: nn.Module, adaptor: RouterAdaptor, block: int, record: EditRecord
    ) -> None:
        """Record how to take this batch back: the database, the block counter and the
        block's ranks in every LoRA layer."""
        database = adaptor.database.snapshot()
        ranks = slice(block * self.config.rank_per_block, (block + 1) * self.config.rank_per_block)
        saved = [
            (a, b, a.weight[ranks].detach().clone(), b.weight[:, ranks].detach().clone())
            for a, b in _lora_pairs(model)
        ]

        def take_back() -> None:
            adaptor.database.restore(database)
            adaptor.next_block = block
            with torch.no_grad():
                for a, b, a_rows, b_cols in saved:
                    a.weight[ranks] = a_rows
                    b.weight[:, ranks] = b_cols

        record.on_undo(f"MELO block {block} and its keys", take_back)

    def _train(self, model: nn.Module, block: int, rows) -> float:
        """Adam on the block's ranks (only they receive gradient) for ``n_iter`` steps."""
        per = self.config.rank_per_block
        ranks = slice(block * per, (block + 1) * per)
        pairs = _lora_pairs(model)
        weights = [p for a, b in pairs for p in (a.weight, b.weight)]
        for w in weights:
            w.requires_grad_(True)
        optimiser = torch.optim.Adam(weights, lr=self.config.edit_lr)
        schedule = torch.optim.lr_scheduler.StepLR(
            optimiser, step_size=self.config.lr_step, gamma=0.5
        )
        loss = torch.tensor(float("nan"))
        try:
            with torch.enable_grad():
                for _ in range(self.config.n_iter):
                    optimiser.zero_grad()
                    losses = []
                    for ids, start, target in rows:
                        logits = model(input_ids=ids[:, :-1]).logits
                        span = teacher_forced(start, target)
                        losses.append(target_nll(F.log_softmax(logits.float(), dim=-1), [span]))
                    loss = torch.stack(losses).mean()
                    loss.backward()
                    for a, b in pairs:
                        _keep_only(a.weight.grad, ranks, dim=0)
                        _keep_only(b.weight.grad, ranks, dim=1)
                    optimiser.step()
                    schedule.step()
        finally:
            for w in weights:
                w.requires_grad_(False)
                w.grad = None
        return float(loss.detach())


def _row(tokenizer, request: EditRequest, device) -> tuple[torch.Tensor, int, list[int]]:
    """The prompt and target as one sequence, where the target starts, and its tokens."""
    whole, start = prompt_and_target(tokenizer, request.prompt, " " + request.target_new.strip())
    return torch.tensor([whole], device=device), start, whole[start:]


def _router_output(model: nn.Module, adaptor: RouterAdaptor, ids: torch.Tensor, position: int):
    """The router module's output at ``position`` of the one sequence ``ids`` (the pass
    stops at the router)."""
    with torch.no_grad(), capture_outputs({"router": adaptor}, stop_after="router") as seen:
        run_until_stop(lambda: model(input_ids=ids))
    return seen["router"][0, position].detach().float().clone()


def _lora_pairs(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(lora_A linear, lora_B linear) of every MELO LoRA layer in ``model``."""
    pairs = []
    for module in model.modules():
        lora_a = getattr(module, "lora_A", None)
        if (
            isinstance(lora_a, nn.ModuleDict)
            and ADAPTER in lora_a
            and isinstance(lora_a[ADAPTER], RoutedRanks)
        ):
            pairs.append((lora_a[ADAPTER].linear, module.lora_B[ADAPTER]))
    return pairs


def _keep_only(grad: torch.Tensor | None, ranks: slice, dim: int) -> None:
    """Zero ``grad`` outside ``ranks`` along ``dim``."""
    if grad is None:
        return
    keep = torch.zeros_like(grad)
    index = [slice(None)] * grad.dim()
    index[dim] = ranks
    keep[tuple(index)] = 1
    grad.mul_(keep)
