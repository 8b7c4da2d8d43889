"""The SERAC editor: loads a scope classifier trained by ``lm-edit train serac`` and
keeps the edits in a :class:`~.memory.ScopeMemory` registered on the model as a prompt
hook (``record.add_prompt_hook``, so undo removes it). ``edited-hf`` then serves every
request through it; the model's weights never change."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from lm_edit.core.arguments import argument
from lm_edit.core.prompts import prompt_hooks
from lm_edit.core.record import EditRecord
from lm_edit.core.tokens import encode
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.learned.checkpoint import base_identity, read_checkpoint
from lm_edit.editors.serac.checkpoint import (
    SERAC_CHECKPOINT,
    build_classifier,
    check_checkpoint_model,
)
from lm_edit.editors.serac.classifier import ScopeClassifier
from lm_edit.editors.serac.memory import ScopeMemory, check_template, resolve_template

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeracConfig(EditorConfig):
    """Hyperparameters of SERAC editing (documented in editors/README.md); the classifier's
    own settings come from the checkpoint."""

    editor_checkpoint: str | None = argument(None, help="folder written by lm-edit train serac")
    threshold: float = argument(
        0.5, gt=0, lt=1, help="similarity above which a request is in scope"
    )
    template: str = argument(
        "reference",
        help="what the counterfactual model reads: reference, new-fact, or a format string "
        "ending in {query}",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_template(self.template)


@register_editor("serac")
class SeracEditor(Editor):
    """Stores each batch's edits in the memory its prompt hook routes requests through."""

    config_class = SeracConfig
    config: SeracConfig
    changes_outputs = False
    changes_prompts = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.classifier: ScopeClassifier | None = None
        self.layer = 0
        self.memory: ScopeMemory | None = None

    def prepare(self, model: nn.Module, tokenizer) -> None:
        """Load the classifier once, after checking it was trained for this model."""
        if self.classifier is not None:
            return
        folder = self.config.editor_checkpoint
        if folder is None:
            raise ValueError(
                f"editor={self.name!r} needs a trained scope classifier: pass "
                f"editor_checkpoint=<folder>, a folder written by "
                f"`{SERAC_CHECKPOINT.train_hint}`."
            )
        checkpoint = read_checkpoint(folder, SERAC_CHECKPOINT)
        where = f"editor_checkpoint={folder!r}"
        check_checkpoint_model(checkpoint, model, where)
        if checkpoint["base"].get("weights_digest") != base_identity(model)["weights_digest"]:
            logger.warning(
                "SERAC: %s was trained on a model with other weights (same shapes); its "
                "scope classifier may not transfer.",
                folder,
            )
        self.classifier = build_classifier(checkpoint).to(next(model.parameters()).device)
        self.layer = int(checkpoint["classifier"]["layer"])
        logger.info("SERAC: scope classifier from %s (step %d)", folder, checkpoint["step"])

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Add ``requests`` to the memory, registering it on the model when it is not."""
        assert self.classifier is not None
        memory = self.memory
        if memory is None or not any(hook is memory for hook in prompt_hooks(model)):
            memory = ScopeMemory(
                model,
                tokenizer,
                self.anatomy,
                self.classifier,
                self.layer,
                self.config.threshold,
                self.config.template,
            )
            record.add_prompt_hook(model, memory)
            self.memory = memory
        added = memory.add(requests)
        record.on_undo("SERAC memory", lambda: memory.remove(added))
        record.details.update(edits=len(memory.entries))

    def tokens_needed(self, tokenizer, request: EditRequest) -> int:
        """The counterfactual prompt of the request's own prompt."""
        head = resolve_template(self.config.template)[: -len("{query}")]
        prefix = head.format(prompt=request.prompt, target=request.target_new)
        return len(encode(tokenizer, f"{prefix}{request.prompt} {request.target_new}"))

    def reset(self) -> None:
        """Forget the memory (the stream was undone)."""
        self.memory = None
