"""Training KE's network (``lm-edit train ke``) with the loop MEND's training uses
(:mod:`.training`): each step edits the unedited model for ``batch_size`` training cases,
each alone, and back-propagates ``(c_edit · edit loss + c_loc · locality KL) / batch_size``
into the network (the condition LSTM with its copy of the input embedding, and every
weight's update network); then the gradient norm is clipped to ``grad_clip`` and Adam
steps with ``lr``. Defaults are EasyEdit's ``hparams/TRAINING/KE`` values (``lr`` 1e-5,
``cedit`` 0.1, ``cloc`` 1.0, ``accumulate_bs`` 10, ``grad_clip`` 100) and the network
sizes of MEND's ``algs/efk.py`` (``hidden_dim`` 512, ``condition_dim`` 768,
``max_scale`` 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.core.arguments import argument
from lm_edit.data.loading import EditData
from lm_edit.editors.learned.checkpoint import KE_CHECKPOINT
from lm_edit.editors.learned.editor import MendConfig, chosen_weights
from lm_edit.editors.learned.ke_network import KeNetwork
from lm_edit.editors.learned.training import (
    NetworkTraining,
    NetworkTrainSettings,
    run_header,
    train_network,
)


@dataclass(frozen=True)
class KeTrainSettings(NetworkTrainSettings):
    """Settings of a KE training run."""

    command: ClassVar[str] = "lm-edit train ke"

    lr: float = argument(1e-5, gt=0, help="Adam learning rate of the network")
    hidden_dim: int = argument(512, ge=1, help="LSTM and update networks' hidden width")
    condition_dim: int = argument(768, ge=1, help="size of the condition vector")
    max_scale: float = argument(1.0, gt=0, help="largest scale of an update")


def train_ke(
    model: nn.Module,
    tokenizer: Any,
    data: EditData,
    output: str | Path,
    settings: KeTrainSettings,
    config: MendConfig,
    anatomy: ModelAnatomy,
    *,
    progress: bool = True,
    on_checkpoint: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume training) a KE network for ``model`` on ``data``, writing the
    checkpoint and the final validation to ``output``; returns the final report."""
    weights = chosen_weights(model, anatomy, config)
    embedding = model.get_input_embeddings().weight.detach()
    spec = {
        "vocab": int(embedding.shape[0]),
        "embedding_dim": int(embedding.shape[1]),
        "hidden_dim": settings.hidden_dim,
        "condition_dim": settings.condition_dim,
        "max_scale": settings.max_scale,
        "seed": settings.seed,
        "stored_transposed": [w.name for w in weights if w.transposed],
    }
    network = KeNetwork(
        {w.name: w.shape for w in weights},
        embedding.cpu(),
        settings.hidden_dim,
        settings.condition_dim,
        settings.max_scale,
        settings.seed,
        tuple(spec["stored_transposed"]),
    ).to(next(model.parameters()).device)
    header = run_header(KE_CHECKPOINT, model, weights, spec, settings, data)
    return train_network(
        NetworkTraining(model, tokenizer, data, Path(output), KE_CHECKPOINT, settings),
        weights,
        header,
        network,
        torch.optim.Adam(network.parameters(), lr=settings.lr),
        progress=progress,
        on_checkpoint=on_checkpoint,
    )
