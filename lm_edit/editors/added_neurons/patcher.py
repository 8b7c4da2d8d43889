"""T-Patcher (Huang et al., ICLR 2023, "Transformer-Patcher: One Mistake Worth One
Neuron"), after the authors' reference code (ZeroYuHuang/Transformer-Patcher).

Requests are edited one after another. For a request, the prompt followed by the new
target is read teacher-forced; every target position whose argmax is not the target
token is a mistake, and one neuron is added beside the MLP of the last block for each
(at most ``max_neurons``; a request the model already gets right adds none). Neuron
``i``'s key starts as the MLP input ``h`` at its mistaken position scaled to
``h / |h|²`` (pre-activation 1 there), its bias at 0, and its value as a random vector
times a trainable gain (``value_gain``, the paper's amplification of the value's
learning rate). Keys, biases, values and gains are trained with Adam (weight decay,
gradient norm clipped at 5) on

    L = NLL(target) + alc · L_act + mlc · L_mem

* ``L_act``: mean of ``exp(act_margin − a_i)`` over the top 5, ``a_i`` the neuron's
  pre-activation at its own position: the neuron fires on the edit;
* ``L_mem``: over the top-``memory_top_k`` entries each, the mean of
  ``exp(m − a_i + margin_memory)`` (a neuron fires on its edit by a margin more than on
  any memory input ``m``) plus the mean of ``exp(m − margin_inactive)`` (it stays below
  ``margin_inactive`` on the memory), ``m`` the neuron's pre-activations on the memory.

The memory is the MLP input at every token (but the first) of ``memory_passages``
passages of text (wikitext, text sampled from the model, or a file; see
:mod:`lm_edit.core.stats`), of the other requests of the batch, and of every request
edited before in the stream (the reference code's memory update). Training checks every
``check_every`` steps from step ``start_check``: once the target is predicted and the
memory loss no longer falls (by 0.001, patience 1, as the reference's early stop) the
neurons are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lm_edit.core.arguments import argument
from lm_edit.core.hooks import capture_inputs, run_until_stop
from lm_edit.core.record import EditRecord
from lm_edit.core.stats import StatsSpec, passage_ids
from lm_edit.core.tokens import pad_batch
from lm_edit.core.training import frozen, seeded, target_nll
from lm_edit.data.requests import EditRequest
from lm_edit.editors.added_neurons.adaptor import (
    Activation,
    NeuronAdaptor,
    Pending,
    adaptor_at,
    mlp_inputs,
    mlp_path,
    readout,
)
from lm_edit.editors.added_neurons.sequences import (
    EditSequence,
    all_predicted,
    edit_sequence,
    wrong_positions,
)
from lm_edit.editors.base import Editor, EditorConfig, register_editor

logger = logging.getLogger(__name__)

ACT_TOP_K = 5
"""The reference's activation loss ``top5_exp``."""
CLIP_NORM = 5.0
"""The reference trainer's gradient clipping."""
PLATEAU = 1e-3
"""How much the memory loss must fall between checks to keep training."""


@dataclass(frozen=True)
class PatcherConfig(EditorConfig):
    """Hyperparameters of T-Patcher (documented in editors/README.md). Without ``layer``
    the last block's MLP is patched, as in the paper."""

    layer: int | None = argument(None, ge=0, help="block whose MLP gets the neurons")
    activation: Activation = "gelu"
    max_neurons: int = argument(5, ge=1, help="neurons per request (one per mistaken token)")
    lr: float = argument(1e-2, gt=0, help="Adam learning rate")
    weight_decay: float = argument(0.01, ge=0, help="Adam weight decay")
    value_gain: float = argument(10.0, gt=0, help="initial gain of a new value vector")
    n_iter: int = argument(2000, ge=1, help="most training steps per request")
    start_check: int = argument(100, ge=0, help="first step at which training may stop")
    check_every: int = argument(25, ge=1, help="steps between stopping checks")
    alc: float = argument(1.0, ge=0, help="weight of the activation loss")
    act_margin: float = argument(0.0, help="pre-activation the edit's neuron is pushed past")
    mlc: float = argument(10.0, ge=0, help="weight of the memory loss")
    margin_memory: float = argument(3.0, ge=0, help="edit's lead over the memory")
    margin_inactive: float = argument(-3.0, le=0, help="bound on memory pre-activations")
    memory_top_k: int = argument(1000, ge=1, help="memory entries the memory loss averages")
    memory_source: str = argument("auto", file=True, help="auto, wikitext, model or a file")
    memory_passages: int = argument(64, ge=1, help="passages of the memory text")
    memory_max_length: int = argument(128, ge=2, help="tokens per memory passage")

    def __post_init__(self) -> None:
        super().__post_init__()
        named = ("auto", "wikitext", "model")
        if self.memory_source not in named and not Path(self.memory_source).is_file():
            raise ValueError(
                f"PatcherConfig: memory_source={self.memory_source!r} is neither "
                f"{', '.join(map(repr, named))} nor an existing text file."
            )


@register_editor("t-patcher")
class PatcherEditor(Editor):
    """Adds trained neurons beside the last block's MLP, one per mistaken target token."""

    config_class = PatcherConfig
    config: PatcherConfig
    quick_settings = {
        "memory_source": "model",
        "memory_passages": 32,
        "memory_max_length": 32,
        "n_iter": 400,
        "start_check": 20,
        "check_every": 10,
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._text_memory: torch.Tensor | None = None
        self._edited_memory: list[torch.Tensor] = []

    def reset(self) -> None:
        self._edited_memory = []

    def layer(self, model: nn.Module) -> int:
        """The patched block (checked against the model's depth)."""
        layer = self.config.layer
        return self.anatomy.num_layers(model) - 1 if layer is None else layer

    def prepare(self, model: nn.Module, tokenizer) -> None:
        """The memory of MLP inputs over the memory text (once per stream)."""
        path = mlp_path(self.anatomy, model, self.layer(model))
        if self._text_memory is not None:
            return
        config = self.config
        rows, source = passage_ids(
            model,
            tokenizer,
            config.memory_source,
            config.memory_passages,
            config.memory_max_length,
            self.seed,
            "memory_source",
        )
        batch_size = StatsSpec().batch_size
        device = next(model.parameters()).device
        module = model.get_submodule(path)
        found = []
        for start in range(0, len(rows), batch_size):
            batch = pad_batch(rows[start : start + batch_size]).to(device)
            with torch.no_grad(), capture_inputs({path: module}, stop_after=path) as got:
                run_until_stop(
                    lambda b=batch: model(input_ids=b.input_ids, attention_mask=b.attention_mask)
                )
            keep = batch.attention_mask.bool()
            keep[:, 0] = False
            found.append(got[path][keep].detach().float())
        self._text_memory = torch.cat(found)
        logger.info("T-Patcher memory: %d inputs from %s", len(self._text_memory), source)

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Patch ``requests`` one after another."""
        adaptor = adaptor_at(
            model, self.anatomy, self.layer(model), self.config.activation, record, "T-Patcher"
        )
        edited = len(self._edited_memory)
        record.on_undo(
            f"T-Patcher memory: back to {edited} edited requests",
            lambda: self._edited_memory.__delitem__(slice(edited, None)),
        )
        device = next(model.parameters()).device
        sequences = [edit_sequence(tokenizer, r) for r in requests]
        inputs = [_inputs_of(model, adaptor, s, device) for s in sequences]
        before = len(adaptor)
        neurons, losses, steps = [], [], []
        with frozen(model), seeded(self.seed, device):
            for i, sequence in enumerate(sequences):
                others = [x for j, x in enumerate(inputs) if j != i]
                memory = torch.cat([self._text_memory.to(device), *self._edited_memory, *others])
                added, loss, taken = self._patch(model, adaptor, sequence, memory, device)
                self._edited_memory.append(inputs[i])
                neurons.append(added)
                losses.append(round(loss, 4))
                steps.append(taken)
        new = len(adaptor) - before
        record.details.update(
            patched_module=mlp_path(self.anatomy, model, self.layer(model)),
            neuron_activation=adaptor.activation_name,
            neurons_added=neurons,
            neurons_total=len(adaptor),
            added_parameters=new * adaptor.parameters_per_neuron(),
            train_steps=steps,
            train_loss=losses,
        )

    def _patch(
        self,
        model: nn.Module,
        adaptor: NeuronAdaptor,
        sequence: EditSequence,
        memory: torch.Tensor,
        device: torch.device,
    ) -> tuple[int, float, int]:
        """Add and train the neurons of one request; (neurons, last loss, steps)."""
        ids = torch.tensor([sequence.ids], device=device)
        hidden, logits = mlp_inputs(model, adaptor, ids)
        wrong = wrong_positions(logits[0], sequence.span)[: self.config.max_neurons]
        if not wrong:
            return 0, 0.0, 0
        h = hidden[0, wrong]
        keys = (h / h.pow(2).sum(dim=1, keepdim=True)).requires_grad_(True)
        biases = torch.zeros(len(wrong), device=device, requires_grad=True)
        raw = torch.randn(len(wrong), adaptor.values.shape[1], device=device).requires_grad_(True)
        gain = torch.full_like(raw, self.config.value_gain).requires_grad_(True)
        pending = Pending(keys, biases, lambda: raw * gain)
        trained = [keys, biases, raw, gain]
        optimiser = torch.optim.Adam(
            trained, lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        adaptor.pending = pending
        try:
            logits_of = readout(model, self.anatomy, adaptor, self.layer(model), ids)
            loss, steps = self._train(logits_of, sequence, wrong, pending, memory, optimiser)
        finally:
            adaptor.pending = None
        with torch.no_grad():
            adaptor.append(keys, biases, raw * gain)
        return len(wrong), loss, steps

    def _train(
        self,
        logits_of: Callable[[], torch.Tensor],
        sequence: EditSequence,
        wrong: list[int],
        pending: Pending,
        memory: torch.Tensor,
        optimiser: torch.optim.Optimizer,
    ) -> tuple[float, int]:
        """Train the pending neurons (see the module docstring); (last loss, updates)."""
        config = self.config
        trained = [p for group in optimiser.param_groups for p in group["params"]]
        memory_losses: list[float] = []
        loss = torch.tensor(float("nan"))
        updates = 0
        with torch.enable_grad():
            for step in range(config.n_iter):
                optimiser.zero_grad()
                logits = logits_of()
                nll = target_nll(F.log_softmax(logits.float(), dim=-1), [sequence.span])
                fired = pending.preacts[0, wrong, torch.arange(len(wrong))]
                on_memory = memory @ pending.keys.T + pending.biases
                act_loss = _top_k_mean(torch.exp(config.act_margin - fired), ACT_TOP_K)
                memory_loss = _top_k_mean(
                    torch.exp(on_memory - fired + config.margin_memory), config.memory_top_k
                ) + _top_k_mean(torch.exp(on_memory - config.margin_inactive), config.memory_top_k)
                loss = nll + config.alc * act_loss + config.mlc * memory_loss
                due = (
                    step >= config.start_check
                    and (step - config.start_check) % config.check_every == 0
                )
                if due and all_predicted(logits.detach(), [sequence.span]):
                    memory_losses.append(float(memory_loss.detach()))
                    if _stopped_improving(memory_losses):
                        break
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trained, CLIP_NORM)
                optimiser.step()
                updates += 1
        return float(loss.detach()), updates


def _inputs_of(
    model: nn.Module, adaptor: NeuronAdaptor, sequence: EditSequence, device: torch.device
) -> torch.Tensor:
    """The MLP inputs at every token but the first of ``sequence`` (a memory entry)."""
    hidden, _ = mlp_inputs(model, adaptor, torch.tensor([sequence.ids], device=device))
    return hidden[0, 1:]


def _top_k_mean(values: torch.Tensor, k: int) -> torch.Tensor:
    flat = values.reshape(-1)
    return torch.topk(flat, min(k, flat.numel()))[0].mean()


def _stopped_improving(history: list[float]) -> bool:
    """The reference's early stop (patience 1): the best value is not the newest."""
    best = 0
    for i, value in enumerate(history):
        if value < history[best] - PLATEAU:
            best = i
    return best < len(history) - 1
