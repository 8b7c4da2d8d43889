"""KnowledgeEditor's hyper-network (De Cao et al., EMNLP 2021, "Editing Factual Knowledge
in Language Models"), as its authors' code and MEND's port of it (``algs/efk.py``) build
it: a condition vector read from the edit's text conditions one small network per edited
weight, which turns the weight's gradient into its edit.

* **Condition.** The edit's tokens (the prompt followed by the new target) are embedded
  with a copy of the model's input embedding (trained with the rest), read by a
  one-layer bidirectional LSTM, and the two directions' final states go through a linear
  layer and ``tanh``: ``c``, of ``condition_dim`` features.
* **Update of weight W (out x in; in x out where it is stored so, as GPT-2's ``Conv1D``)
  with gradient G (the same orientation).** A two-layer MLP with weight normalisation
  (``condition_dim -> hidden -> 2 (out + in) + 1``, ``tanh`` between) maps ``c`` to
  ``α_col, α_row, β_col, β_row`` and a scalar ``η``; ``A = softmax(α_row)ᵀ α_col`` and
  ``B = softmax(β_row)ᵀ β_col`` are rank-one matrices of W's shape, and the edit is
  ``ΔW = max_scale · σ(η) · (G ⊙ A + B)``, added to W.

The reference conditions on one edit at a time; so does :meth:`KeNetwork.deltas`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from lm_edit.core.tokens import Batch


def conditioner_name(weight_name: str) -> str:
    """A module name for the update network of ``weight_name`` (no dots)."""
    return weight_name.replace(".", "_")


class EditCondition(nn.Module):
    """The condition vector of one edit's tokens: embedding, bidirectional LSTM (final
    states of both directions), linear layer and ``tanh``."""

    def __init__(self, embedding: torch.Tensor, hidden_dim: int, condition_dim: int) -> None:
        super().__init__()
        vocab, width = embedding.shape
        self.embedding = nn.Embedding(vocab, width, padding_idx=0)
        with torch.no_grad():
            self.embedding.weight.copy_(embedding.float())
        self.lstm = nn.LSTM(width, hidden_dim, num_layers=1, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(2 * hidden_dim, condition_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        lengths = batch.attention_mask.sum(-1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(batch.input_ids), lengths, batch_first=True, enforce_sorted=False
        )
        _, (final, _) = self.lstm(packed)  # (directions, batch, hidden)
        both = torch.cat([final[-2], final[-1]], dim=-1)
        return torch.tanh(self.linear(both))


class ConditionedUpdate(nn.Module):
    """``max_scale · σ(η) · (G ⊙ A + B)`` for one (out x in) weight, from a condition."""

    def __init__(
        self, shape: tuple[int, int], condition_dim: int, hidden_dim: int, max_scale: float
    ) -> None:
        super().__init__()
        self.shape = shape
        out_dim, in_dim = shape
        self.mlp = nn.Sequential(
            weight_norm(nn.Linear(condition_dim, hidden_dim)),
            nn.Tanh(),
            weight_norm(nn.Linear(hidden_dim, 2 * (out_dim + in_dim) + 1)),
        )
        self.max_scale = max_scale

    def forward(self, condition: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        out_dim, in_dim = self.shape
        col_a, row_a, col_b, row_b, gate = self.mlp(condition).split(
            [in_dim, out_dim, in_dim, out_dim, 1], dim=-1
        )
        a = F.softmax(row_a, dim=-1).T @ col_a
        b = F.softmax(row_b, dim=-1).T @ col_b
        return self.max_scale * torch.sigmoid(gate).squeeze() * (gradient * a + b)


class KeNetwork(nn.Module):
    """The condition network and one update network per edited weight (``shapes``: name
    -> (in, out), as MEND's); built from ``seed`` so equal settings give equal networks.
    Each update network works in its weight's stored orientation, as the reference's: (in,
    out) for the weights named in ``stored_transposed`` (GPT-2's ``Conv1D``), else (out,
    in), so the softmaxes run over the same axes as there."""

    def __init__(
        self,
        shapes: dict[str, tuple[int, int]],
        embedding: torch.Tensor,
        hidden_dim: int,
        condition_dim: int,
        max_scale: float,
        seed: int,
        stored_transposed: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.names = list(shapes)
        self.stored_transposed = frozenset(stored_transposed)
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.condition = EditCondition(embedding, hidden_dim, condition_dim)
            self.updates = nn.ModuleDict(
                {
                    conditioner_name(name): ConditionedUpdate(
                        self._stored((out_dim, in_dim), name), condition_dim, hidden_dim, max_scale
                    )
                    for name, (in_dim, out_dim) in shapes.items()
                }
            )
        finally:
            torch.random.set_rng_state(state)

    def deltas(
        self,
        factors: dict[str, tuple[torch.Tensor, torch.Tensor]],
        condition: Batch | None = None,
    ) -> dict[str, torch.Tensor]:
        """The amount to subtract from each weight in ``factors`` (as (out, in)): minus
        ``ΔW``, with the gradient ``G = Σ_t δ_t u_tᵀ`` rebuilt from the factors and the
        condition read from ``condition``, one edit's tokens."""
        if condition is None or condition.input_ids.shape[0] != 1:
            raise ValueError("KE conditions on the tokens of exactly one edit at a time.")
        device = self.condition.linear.weight.device
        vector = self.condition(condition.to(device))
        out = {}
        for name, (u, delta) in factors.items():
            gradient = delta.to(device).float().T @ u.to(device).float()
            stored = name in self.stored_transposed
            update = self.updates[conditioner_name(name)](
                vector, gradient.T if stored else gradient
            )
            out[name] = -(update.T if stored else update)
        return out

    def _stored(self, shape: tuple[int, int], name: str) -> tuple[int, int]:
        """``shape`` (out, in) in the orientation weight ``name`` is stored in."""
        return shape[::-1] if name in self.stored_transposed else shape
