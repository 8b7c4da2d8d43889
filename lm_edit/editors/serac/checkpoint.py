"""SERAC checkpoints (``serac.pt`` in a folder ``lm-edit train serac`` writes), read with
``torch.load(weights_only=True)``: the format and version, the base model's identity
(:func:`~lm_edit.editors.learned.checkpoint.base_identity`), the classifier's shape
(``classifier``: feature layer, width, embedding size, seed) and its ``state``, and what
resuming the run needs (``step``, ``settings``, ``train_data``, ``training``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from lm_edit.editors.learned.checkpoint import (
    CheckpointError,
    CheckpointKind,
    base_identity,
    check_base_model,
)
from lm_edit.editors.serac.classifier import ScopeClassifier

FEATURES_FILE = "features.pt"
"""The run's feature bank, kept so that a resumed run does not recompute it."""
SERAC_CHECKPOINT = CheckpointKind("serac", "lm-edit-serac", 1, "serac.pt", (FEATURES_FILE,))


def check_checkpoint_model(checkpoint: dict[str, Any], model: nn.Module, where: str) -> None:
    """Refuse a checkpoint made for a model of another type or shape."""
    check_base_model(checkpoint["base"], base_identity(model), where, SERAC_CHECKPOINT)


def build_classifier(checkpoint: dict[str, Any]) -> ScopeClassifier:
    """The classifier a checkpoint holds, in eval mode on the CPU, without gradients."""
    spec = checkpoint["classifier"]
    classifier = ScopeClassifier(
        int(spec["hidden"]), int(spec["width"]), int(spec["dim"]), int(spec["seed"])
    )
    try:
        classifier.load_state_dict(checkpoint["state"])
    except RuntimeError as error:
        raise CheckpointError(
            f"The checkpoint's scope classifier does not load: {error}"
        ) from error
    return classifier.eval().requires_grad_(False)
