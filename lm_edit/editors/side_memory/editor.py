"""WISE (Wang et al., NeurIPS 2024, "WISE: Rethinking the Knowledge Memory for Lifelong
Model Editing of Large Language Models"), after EasyEdit's ``easyeditor/models/wise``
(the authors' code).

One linear module of one block (the MLP output projection; GPT-2 XL's MLP input) is
wrapped by a :class:`~.adaptor.SideMemoryAdaptor`. Each edit batch trains the side memory
(a copy of the module's weight) by SGD (``edit_lr``, weight decay 1e-5, ``n_iter``
steps, stopping early once the loss is below 0.02 and flat) on

* the target NLL of every request written into each context template (the prompt
  alone and ten model-generated prefixes), teacher-forced, plus
* the activation margins: with ``d`` = the per-row mean of ``||act(side out) - act(main
  out)||``, in-scope rows (the edits) are pushed to ``d >= beta`` and out-of-scope rows
  (irrelevant text) to ``d <= alpha``, and each out-of-scope ``d`` at least ``gamma``
  below each in-scope one (``act_margin: [alpha, beta, gamma]``); each term is the mean of
  its positive parts.

Gradients reach only a random ``mask_ratio`` of the side memory's entries (one mask per
shard: knowledge sharding), and after each step the side memory is clamped to the
original weight ± ``norm_constraint``. The in-scope distance of the last step is
recorded: routing uses the side memory when a sequence's distance reaches ``act_ratio``
times the smallest recorded one. Every ``save_freq`` batches the side memory is filed as
a shard; every ``merge_freq`` batches the newest ``merge_freq / save_freq`` shards are
TIES-merged (:mod:`.merging`) into one. The model's weights never change.

Undo: the first batch puts the adaptor in place (``record.set_module``); every batch
records the adaptor's edit state first (``record.on_undo``), so undoing a later batch
restores exactly the state before it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lm_edit.core.anatomy import is_transposed, weight_as_out_in
from lm_edit.core.arguments import argument
from lm_edit.core.hooks import watch_cache
from lm_edit.core.record import EditRecord
from lm_edit.core.stats import passage_ids
from lm_edit.core.tokens import pad_batch, prompt_and_target
from lm_edit.core.training import frozen, seeded, teacher_forced
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.layers import mlp_module_path, one_block
from lm_edit.editors.locate.templates import generate_context_templates
from lm_edit.editors.side_memory.adaptor import SideMemoryAdaptor
from lm_edit.editors.side_memory.merging import ties_merge
from lm_edit.editors.side_memory.objective import edit_nll, margin_loss, row_distances

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WiseConfig(EditorConfig):
    """Hyperparameters of WISE (documented in editors/README.md). Without ``layer`` the
    block ``round(layer_fraction · depth)`` is wrapped (the reference's 27 of 32 on
    Llama-2-7B)."""

    layer: int | None = argument(None, ge=0, help="block whose module holds the side memory")
    layer_fraction: float = argument(0.84, ge=0, le=1, help="block as a fraction of depth")
    module: Literal["mlp_out", "mlp_in"] = "mlp_out"
    edit_lr: float = argument(1.0, gt=0, help="SGD learning rate")
    n_iter: int = argument(70, ge=1, help="SGD steps per batch")
    mask_ratio: float = argument(0.2, gt=0, le=1, help="share of entries a shard trains")
    norm_constraint: float = argument(1.0, gt=0, help="largest change of an entry")
    act_margin: tuple[float, ...] = argument((5.0, 20.0, 10.0), help="alpha, beta, gamma")
    act_ratio: float = argument(0.88, gt=0, help="routing threshold / smallest in-scope distance")
    save_freq: int = argument(500, ge=1, help="batches per shard")
    merge_freq: int = argument(1000, ge=1, help="batches between merges")
    density: float = argument(0.53, gt=0, le=1, help="TIES density")
    templates: tuple[tuple[int, int], ...] = ((5, 5), (10, 5))
    irrelevant_source: str = argument("auto", file=True, help="auto, wikitext, model or a file")
    irrelevant_passages: int = argument(64, ge=1, help="passages of irrelevant text")
    irrelevant_tokens: int = argument(32, ge=2, help="tokens of an irrelevant passage")
    nll_denominator: Literal["reference", "target"] = "reference"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.act_margin) != 3:
            raise ValueError(
                f"WiseConfig: act_margin={list(self.act_margin)} needs three numbers: "
                "alpha, beta, gamma (e.g. 5;20;10)."
            )
        if self.merge_freq % self.save_freq:
            raise ValueError(
                f"WiseConfig: merge_freq={self.merge_freq} must be a multiple of "
                f"save_freq={self.save_freq} (a merge joins whole shards)."
            )


@register_editor("wise")
class WiseEditor(Editor):
    """Trains a side memory beside one module and routes inputs between the memories."""

    config_class = WiseConfig
    config: WiseConfig
    quick_settings = {
        "n_iter": 60,
        "templates": [[3, 2]],
        "irrelevant_source": "model",
        "irrelevant_passages": 4,
        "irrelevant_tokens": 8,
        "act_margin": [1.0, 4.0, 2.0],
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._templates: list[str] | None = None
        self._irrelevant: list[list[int]] | None = None

    def reset(self) -> None:
        self._templates = None
        self._irrelevant = None

    def module_path(self, model: nn.Module) -> str:
        """Path of the wrapped module (validated against the model's depth)."""
        depth = self.anatomy.num_layers(model)
        layer = one_block(self.config.layer, self.config.layer_fraction, depth, "WISE")
        return mlp_module_path(self.anatomy, layer, self.config.module)

    def prepare(self, model: nn.Module, tokenizer) -> None:
        """Context templates and irrelevant passages (once per stream)."""
        if self._templates is not None:
            return
        spec = [tuple(s) for s in self.config.templates]
        self._templates = generate_context_templates(model, tokenizer, spec, self.seed)
        config = self.config
        self._irrelevant, source = passage_ids(
            model,
            tokenizer,
            config.irrelevant_source,
            config.irrelevant_passages,
            config.irrelevant_tokens,
            self.seed,
            "irrelevant_source",
        )
        logger.info("WISE: %d irrelevant passages from %s", len(self._irrelevant), source)

    def adaptor(self, model: nn.Module, record: EditRecord) -> SideMemoryAdaptor:
        """The adaptor at the chosen module, put in place on the first batch."""
        path = self.module_path(model)
        current = model.get_submodule(path)
        if isinstance(current, SideMemoryAdaptor):
            return current
        activation = getattr(model.config, "hidden_act", None) or getattr(
            model.config, "activation_function", "gelu"
        )
        weight = weight_as_out_in(current, is_transposed(current))
        adaptor = SideMemoryAdaptor(current, weight, activation, self.config.act_ratio)
        record.set_module(model, path, adaptor)
        watch = watch_cache(lambda extends: setattr(adaptor, "continuing", extends))
        record.add_hook(model, "", watch, pre=True, with_kwargs=True)
        return adaptor

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Train the side memory on ``requests``; file and merge shards on schedule."""
        device = next(model.parameters()).device
        with frozen(model), seeded(self.seed + 7919 * self._batches(model), device):
            adaptor = self.adaptor(model, record)
            before = adaptor.snapshot()
            record.on_undo(
                f"WISE side memory: back to {before.edits} batches", lambda: adaptor.restore(before)
            )
            if adaptor.edits % self.config.save_freq == 0 or adaptor.mask is None:
                adaptor.mask = (
                    torch.rand_like(adaptor.side, dtype=torch.float32) < self.config.mask_ratio
                ).to(adaptor.side.dtype)
            loss, in_scope, steps = self._train(model, tokenizer, adaptor, requests)
            adaptor.side_acts.append(in_scope)
            adaptor.edits += 1
            filed = merged = False
            if adaptor.edits % self.config.save_freq == 0:
                adaptor.file_shard()
                filed = True
            if adaptor.edits % self.config.merge_freq == 0:
                self._merge(adaptor)
                merged = True
        record.details.update(
            side_memory_module=self.module_path(model),
            train_loss=round(loss, 4),
            train_steps=steps,
            in_scope_distance=round(in_scope, 4),
            shards=len(adaptor.shards),
            shard_filed=filed,
            shards_merged=merged,
        )

    def _batches(self, model: nn.Module) -> int:
        current = model.get_submodule(self.module_path(model))
        return current.edits if isinstance(current, SideMemoryAdaptor) else 0

    def _merge(self, adaptor: SideMemoryAdaptor) -> None:
        """TIES-merge the newest ``merge_freq / save_freq`` shards into one."""
        count = self.config.merge_freq // self.config.save_freq
        shards, acts = adaptor.shards[-count:], adaptor.shard_acts[-count:]
        merged = ties_merge(adaptor.original, shards, [1.0 / count] * count, self.config.density)
        adaptor.shards = [*adaptor.shards[:-count], merged]
        adaptor.shard_acts = [*adaptor.shard_acts[:-count], min(acts)]

    def _rows(self, tokenizer, requests: list[EditRequest]):
        """Template rows (ids, target start, target ids, request index) and the irrelevant
        rows for this batch."""
        rows = []
        for index, request in enumerate(requests):
            target = " " + request.target_new.strip()
            for template in self._templates or ["{}"]:
                ids, start = prompt_and_target(tokenizer, template.format(request.prompt), target)
                rows.append((ids, start, ids[start:], index))
        pool = self._irrelevant or []
        picks = torch.randperm(len(pool))[: max(1, len(requests))].tolist()
        return rows, [pool[i] for i in picks]

    def _train(self, model, tokenizer, adaptor: SideMemoryAdaptor, requests):
        """SGD on the side memory; the last loss, the last in-scope distance, the steps."""
        config = self.config
        rows, irrelevant = self._rows(tokenizer, requests)
        device = adaptor.side.device
        batch = pad_batch([r[0] for r in rows] + irrelevant).to(device)
        spans = [teacher_forced(start, target) for _, start, target, _ in rows]
        owners = torch.tensor([r[3] for r in rows], device=device)
        lower = adaptor.original - config.norm_constraint
        upper = adaptor.original + config.norm_constraint
        optimiser = torch.optim.SGD([adaptor.side], lr=config.edit_lr, weight_decay=1e-5)
        loss_value, previous, in_scope, steps = float("inf"), float("inf"), 0.0, 0
        adaptor.side.requires_grad_(True)
        adaptor.editing = True
        try:
            with torch.enable_grad():
                while steps < config.n_iter and not _converged(loss_value, previous):
                    logits = model(
                        input_ids=batch.input_ids, attention_mask=batch.attention_mask
                    ).logits
                    log_probs = F.log_softmax(logits[: len(rows)].float(), dim=-1)
                    nll = edit_nll(log_probs, spans, config.nll_denominator)
                    inside, outside = row_distances(adaptor, batch.attention_mask, len(rows))
                    loss = nll + margin_loss(inside, outside, owners, config.act_margin)
                    in_scope = float(inside.detach().mean())
                    optimiser.zero_grad()
                    loss.backward()
                    adaptor.side.grad.mul_(adaptor.mask)
                    optimiser.step()
                    with torch.no_grad():
                        adaptor.side.copy_(torch.maximum(torch.minimum(adaptor.side, upper), lower))
                    previous, loss_value = loss_value, float(loss.detach())
                    steps += 1
        finally:
            adaptor.editing = False
            adaptor.outputs = None
            adaptor.side.requires_grad_(False)
            adaptor.side.grad = None
        return loss_value, in_scope, steps


def _converged(loss: float, previous: float) -> bool:
    """WISE's early stop: the loss is below 0.02 and moved by at most 1e-4."""
    return abs(loss - previous) <= 1e-4 and loss <= 0.02
