"""Extra neurons beside a feed-forward block: a wrapper around one block's MLP whose output
is the MLP's own plus the contribution of neurons added next to it.

Each added neuron ``i`` has a key ``k_i`` (the MLP's input width), a bias ``b_i`` and a
value ``v_i`` (the MLP's output width); for an MLP input ``x`` at a token the wrapper adds

    Σ_i σ(k_i · x + b_i) v_i

to the MLP's output there, ``σ`` being the activation the editor chose (the MLP's own,
GELU or ReLU). This is an FFN with extra rows in its first matrix and extra columns in
its second, written beside the original so its weights stay untouched (T-Patcher adds one
neuron per mistaken token, CaliNET a block of calibration memory slots).

Neurons live in the wrapper's state as float32 parameters (``keys``, ``biases``,
``values``; never trained in place): an editor trains new neurons as a :class:`Pending`
block the forward pass also adds (recording their pre-activations for the losses that
need them), then :meth:`NeuronAdaptor.append` makes them permanent. Neurons are only ever
appended, so :meth:`NeuronAdaptor.truncate` takes a batch's neurons back. With no neurons
and nothing pending the output is the wrapped MLP's own tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.core.hooks import capture_inputs, capture_outputs
from lm_edit.core.record import EditRecord

Activation = Literal["model", "gelu", "relu"]
_MLP_ACTIVATION_NAMES = ("act_fn", "act", "activation_fn", "activation", "act_layer")


@dataclass
class Pending:
    """Neurons being trained: ``keys`` (n, in), ``biases`` (n,) and a callable giving the
    values (n, out), so an editor may parametrise them (T-Patcher: a vector times a gain).
    ``preacts`` holds the pre-activations ``k · x + b`` (batch, seq, n) of the last
    forward pass."""

    keys: torch.Tensor
    biases: torch.Tensor
    values: Callable[[], torch.Tensor]
    preacts: torch.Tensor | None = None


class NeuronAdaptor(nn.Module):
    """Wraps ``mlp`` (kept as ``self.mlp``, unchanged) and adds its extra neurons' output."""

    def __init__(
        self,
        mlp: nn.Module,
        in_width: int,
        out_width: int,
        activation: Callable[[torch.Tensor], torch.Tensor],
        activation_name: str,
    ) -> None:
        super().__init__()
        self.mlp = mlp
        device = next(mlp.parameters()).device
        self.keys = nn.Parameter(torch.zeros(0, in_width, device=device), requires_grad=False)
        self.biases = nn.Parameter(torch.zeros(0, device=device), requires_grad=False)
        self.values = nn.Parameter(torch.zeros(0, out_width, device=device), requires_grad=False)
        self._activation = activation
        self.activation_name = activation_name
        self.pending: Pending | None = None

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def extra_repr(self) -> str:
        return f"neurons={len(self)}, activation={self.activation_name}"

    def forward(self, hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.mlp(hidden, *args, **kwargs)
        if len(self) == 0 and self.pending is None:
            return out
        x = hidden.float()
        extra = torch.zeros((), device=out.device)
        if len(self):
            extra = self._activation(x @ self.keys.T + self.biases) @ self.values
        if self.pending is not None:
            extra = extra + self.pending_output(x)
        return out + extra.to(out.dtype)

    def pending_output(self, hidden: torch.Tensor) -> torch.Tensor:
        """What the pending neurons add for MLP inputs ``hidden`` (float32), recording
        their pre-activations."""
        pending = self.pending
        if pending is None:
            return torch.zeros((), device=hidden.device)
        pending.preacts = hidden.float() @ pending.keys.T + pending.biases
        return self._activation(pending.preacts) @ pending.values()

    def preactivations(self, hidden: torch.Tensor) -> torch.Tensor:
        """``k · x + b`` of every permanent neuron for inputs ``hidden`` (..., in)."""
        return hidden.float() @ self.keys.T + self.biases

    def append(self, keys: torch.Tensor, biases: torch.Tensor, values: torch.Tensor) -> None:
        """Make neurons permanent (copies, detached, float32)."""

        def grown(old: nn.Parameter, new: torch.Tensor) -> nn.Parameter:
            new = new.detach().float().to(old.device)
            return nn.Parameter(torch.cat([old.detach(), new]), requires_grad=False)

        self.keys = grown(self.keys, keys)
        self.biases = grown(self.biases, biases)
        self.values = grown(self.values, values)

    def truncate(self, count: int) -> None:
        """Keep only the first ``count`` neurons (undo of later appends)."""
        self.keys = nn.Parameter(self.keys.detach()[:count].clone(), requires_grad=False)
        self.biases = nn.Parameter(self.biases.detach()[:count].clone(), requires_grad=False)
        self.values = nn.Parameter(self.values.detach()[:count].clone(), requires_grad=False)

    def parameters_per_neuron(self) -> int:
        """Numbers one neuron adds: its key, bias and value."""
        return int(self.keys.shape[1] + 1 + self.values.shape[1])


def mlp_path(anatomy: ModelAnatomy, model: nn.Module, layer: int) -> str:
    """Path of block ``layer``'s MLP module (the parent of its output projection), checked
    against the model's depth."""
    depth = anatomy.num_layers(model)
    if not 0 <= layer < depth:
        raise ValueError(f"layer={layer} is outside the model, which has layers 0..{depth - 1}.")
    parent = anatomy.mlp_out.rpartition(".")[0]
    if not parent:
        raise ValueError(
            f"The MLP output projection {anatomy.mlp_out!r} sits directly in the block; "
            "extra neurons need the MLP as a module of its own to wrap."
        )
    return f"{anatomy.layer_name(layer)}.{parent}"


def activation_function(
    mlp: nn.Module, choice: Activation
) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The activation of the added neurons and its name: the MLP's own (its ``act_fn`` /
    ``act`` / ``activation_fn`` attribute), or GELU / ReLU."""
    if choice == "gelu":
        return F.gelu, "gelu"
    if choice == "relu":
        return F.relu, "relu"
    for name in _MLP_ACTIVATION_NAMES:
        found = getattr(mlp, name, None)
        if callable(found):
            return found, f"{type(mlp).__name__}.{name} ({type(found).__name__})"
    raise ValueError(
        f"activation=model: the MLP {type(mlp).__name__} has none of the attributes "
        f"{', '.join(_MLP_ACTIVATION_NAMES)}; pass activation=gelu or activation=relu."
    )


def adaptor_at(
    model: nn.Module,
    anatomy: ModelAnatomy,
    layer: int,
    activation: Activation,
    record: EditRecord,
    description: str,
) -> NeuronAdaptor:
    """The adaptor around block ``layer``'s MLP: put in place on first use (undo puts the
    original MLP back), otherwise the existing one, whose neurons added from now on are
    taken back by undoing ``record``."""
    path = mlp_path(anatomy, model, layer)
    current = model.get_submodule(path)
    if isinstance(current, NeuronAdaptor):
        count = len(current)
        record.on_undo(f"{description}: back to {count} neurons", lambda: current.truncate(count))
        return current
    width = anatomy.hidden_size(model)
    function, name = activation_function(current, activation)
    adaptor = NeuronAdaptor(current, width, width, function, name)
    record.set_module(model, path, adaptor)
    return adaptor


def mlp_inputs(model: nn.Module, adaptor: NeuronAdaptor, ids: torch.Tensor, mask=None):
    """The adaptor's input (batch, seq, in; float32) and the model's logits for ``ids``."""
    with torch.no_grad(), capture_inputs({"mlp": adaptor}) as got:
        logits = model(input_ids=ids, attention_mask=mask).logits
    return got["mlp"].detach().float(), logits


def readout(
    model: nn.Module,
    anatomy: ModelAnatomy,
    adaptor: NeuronAdaptor,
    layer: int,
    ids: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> Callable[[], torch.Tensor]:
    """A function giving the model's logits for ``ids`` as the adaptor's pending neurons
    change while they train.

    When the adaptor sits in the last block and the MLP's output goes straight into the
    residual stream, everything up to the block's output stays fixed: one forward pass
    keeps the MLP input and the block output, and each call adds the pending neurons'
    output and applies the final norm and the LM head. This is checked against a full
    forward pass once (a model that transforms its logits otherwise gets full passes).
    """

    def full() -> torch.Tensor:
        return model(input_ids=ids, attention_mask=mask).logits

    last = anatomy.num_layers(model) - 1
    if layer != last or anatomy.mlp_output_norm(model, layer) is not None:
        return full
    block = anatomy.layer_module(model, layer)
    pending, adaptor.pending = adaptor.pending, None
    try:
        with (
            torch.no_grad(),
            capture_inputs({"mlp": adaptor}) as inputs,
            capture_outputs({"block": block}) as outputs,
        ):
            full()
    finally:
        adaptor.pending = pending
    hidden, residual = inputs["mlp"].detach().float(), outputs["block"].detach()
    norm, head = anatomy.final_norm_module(model), anatomy.lm_head_module(model)

    def fast() -> torch.Tensor:
        return head(norm(residual + adaptor.pending_output(hidden).to(residual.dtype)))

    with torch.no_grad():
        expected, got = full().float(), fast().float()
    scale = float(expected.abs().max())
    if got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * scale):
        return fast
    return full
