"""Training SERAC's scope classifier (``lm-edit train serac``).

The edit data is split as MEND's training splits it (shuffled with ``seed``, the first
``val_cases`` held out). Each step takes the next ``batch_size`` training cases (epochs
of random order, each case with an unrelated prompt: one of its locality probes or
another case's fact) and scores every query of the batch against every edit of the
batch: the cases' prompts and rephrases, and the unrelated prompts. A query is in the
scope of an edit when it is that edit's prompt or one of its rephrases; every other pair
is out of scope. The loss is the paper's binary cross-entropy of the similarity, averaged
over the in-scope pairs and over the out-of-scope pairs and the two halves summed
(balanced, since out-of-scope pairs outnumber the others by about the batch size); the
trivial pairs of an edit with its own prompt are left out. The base model is frozen and
only supplies features (:mod:`.classifier`); its forward pass stops at the feature layer.

Checkpoints, validation, resuming and the output folder work as for MEND
(:mod:`lm_edit.editors.learned.loop`): a run started again with the same settings
continues from its last checkpoint and ends with the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.core.arguments import argument, check_bounds
from lm_edit.core.training import frozen
from lm_edit.data.loading import EditData
from lm_edit.data.requests import EditRequest
from lm_edit.editors.learned.checkpoint import base_identity, read_checkpoint
from lm_edit.editors.learned.loop import (
    CheckpointedRun,
    check_resume,
    resume_saved,
    train_and_report,
)
from lm_edit.editors.learned.objective import EditCase
from lm_edit.editors.learned.run_folder import check_output
from lm_edit.editors.learned.training import CaseSampler, split_cases, validation_cases
from lm_edit.editors.serac.checkpoint import FEATURES_FILE, SERAC_CHECKPOINT
from lm_edit.editors.serac.classifier import (
    FeatureBank,
    ScopeClassifier,
    binary_log_likelihood,
)
from lm_edit.editors.serac.memory import check_template
from lm_edit.editors.serac.validation import validate_scope

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeracTrainSettings:
    """Settings of a scope classifier's training run (batch size, gradient clip and
    threshold are the reference's; the classifier is ours, trained from scratch, hence
    its larger learning rate)."""

    steps: int = argument(3000, ge=1, help="optimiser updates")
    batch_size: int = argument(10, ge=2, help="edits per update")
    lr: float = argument(1e-3, gt=0, help="Adam learning rate of the classifier")
    layer: int | None = argument(None, ge=0, help="feature block; default: 15% of the depth")
    width: int = argument(512, ge=1, help="hidden width of the classifier's MLP")
    dim: int = argument(256, ge=1, help="embedding size")
    grad_clip: float = argument(100.0, gt=0, help="largest gradient norm")
    val_every: int = argument(1000, ge=1, help="steps between validations")
    val_cases: int = argument(100, ge=1, help="held-out validation cases")
    checkpoint_every: int | None = argument(None, ge=1, help="default: val_every")
    seed: int = 0
    template: str = argument("reference", help="the editor's template the validation uses")

    def __post_init__(self) -> None:
        check_bounds(self, "lm-edit train serac")
        check_template(self.template)

    def resumable(self) -> dict[str, Any]:
        """Every setting a resumed run must share (all but ``steps``)."""
        out = asdict(self)
        out.pop("steps")
        out["checkpoint_every"] = self.checkpoint_every or self.val_every
        return out


DEFAULT_LAYER_FRACTION = 0.15
"""The default feature block as a share of the depth (block 4 of SmolLM2's 30): on
SmolLM2-135M-Instruct the early blocks told an edit's neighbourhood prompts (the same
relation about another subject) from its rephrases far better than the middle one
(editors/README.md)."""


def feature_layer(model: nn.Module, anatomy: ModelAnatomy, layer: int | None) -> int:
    """``layer``, or the block at :data:`DEFAULT_LAYER_FRACTION` of the depth; validated
    against the model's depth."""
    depth = anatomy.num_layers(model)
    chosen = int(depth * DEFAULT_LAYER_FRACTION) if layer is None else layer
    if not 0 <= chosen < depth:
        raise ValueError(f"--layer {chosen} is outside the model, which has blocks 0..{depth - 1}.")
    return chosen


def scope_batch(cases: list[EditCase]) -> tuple[list[str], list[str], torch.Tensor, torch.Tensor]:
    """The batch's edits (their prompts), its queries, which query is in which edit's
    scope, and which pairs count (all but an edit with its own prompt)."""
    edits = [case.request.prompt for case in cases]
    queries: list[str] = []
    owners: list[int | None] = []
    for index, case in enumerate(cases):
        for text in (case.request.prompt, *case.request.rephrases):
            queries.append(text)
            owners.append(index)
    for case in cases:
        queries.append(case.unrelated[0])
        owners.append(None)
    in_scope = torch.zeros(len(queries), len(edits), dtype=torch.bool)
    for row, owner in enumerate(owners):
        if owner is not None:
            same = [j for j, prompt in enumerate(edits) if prompt == edits[owner]]
            in_scope[row, same] = True
    counted = torch.tensor([[q != e for e in edits] for q in queries])
    return edits, queries, in_scope, counted


def scope_texts(training: list[EditRequest], validation: list[EditCase]) -> list[str]:
    """Every text the classifier reads in a run: the cases' prompts and rephrases, their
    locality prompts, and the validation cases' unrelated prompts."""
    texts = []
    for request in [*training, *(case.request for case in validation)]:
        texts += [request.prompt, *request.rephrases, *(p.prompt for p in request.locality)]
    return texts + [case.unrelated[0] for case in validation]


def balanced_loss(log_similarity: torch.Tensor, in_scope: torch.Tensor, counted: torch.Tensor):
    """Mean negative log-likelihood of the in-scope pairs plus that of the others."""
    ll = binary_log_likelihood(log_similarity, in_scope)
    loss = log_similarity.new_zeros(())
    for part in (in_scope & counted, ~in_scope & counted):
        if part.any():
            loss = loss - ll[part].mean()
    return loss


@dataclass
class ScopeRun(CheckpointedRun):
    """One scope classifier's training run (a :class:`~..learned.loop.TrainingRun`)."""

    model: nn.Module
    tokenizer: Any
    anatomy: ModelAnatomy
    layer: int
    settings: SeracTrainSettings
    header: dict[str, Any]
    classifier: ScopeClassifier
    optimizer: torch.optim.Adam
    sampler: CaseSampler
    validation: list[EditCase]
    bank: FeatureBank
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def train_step(self) -> dict[str, float]:
        """One update over ``batch_size`` edits; the loss and the mean in-scope and
        out-of-scope similarities."""
        cases = [self.sampler.next() for _ in range(self.settings.batch_size)]
        edits, queries, in_scope, counted = scope_batch(cases)
        texts = list(dict.fromkeys(edits + queries))
        where = {text: row for row, text in enumerate(texts)}
        device = next(self.classifier.parameters()).device
        features = self.bank(texts).to(device)
        self.classifier.train()
        self.optimizer.zero_grad(set_to_none=True)
        embedded = self.classifier(features)
        log_similarity = self.classifier.log_similarity(
            embedded[[where[q] for q in queries]], embedded[[where[e] for e in edits]]
        )
        loss = balanced_loss(log_similarity, in_scope.to(device), counted.to(device))
        loss.backward()
        try:
            torch.nn.utils.clip_grad_norm_(
                self.classifier.parameters(), self.settings.grad_clip, error_if_nonfinite=True
            )
        except RuntimeError as error:
            raise ValueError(
                f"SERAC training diverged at step {self.step + 1}: the gradient norm is not "
                "finite. Lower --lr and start a new folder (the last checkpoint is kept)."
            ) from error
        self.optimizer.step()
        self.step += 1
        similarity = log_similarity.detach().exp()
        positive = in_scope & counted
        return {
            "loss": float(loss.detach()),
            "sim_in": float(similarity[positive].mean()) if positive.any() else 1.0,
            "sim_out": float(similarity[~in_scope].mean()),
        }

    def validate(self) -> dict[str, Any]:
        return validate_scope(
            self.model,
            self.tokenizer,
            self.anatomy,
            self.classifier,
            self.layer,
            self.validation,
            template=self.settings.template,
            featurize=self.bank,
        )

    @property
    def trained(self) -> nn.Module:
        return self.classifier


_RESUME_KEYS = ("base", "classifier", "settings", "train_data")


def train_serac(
    model: nn.Module,
    tokenizer: Any,
    data: EditData,
    output: str | Path,
    settings: SeracTrainSettings,
    anatomy: ModelAnatomy,
    *,
    progress: bool = True,
    on_checkpoint=None,
) -> dict[str, Any]:
    """Train (or resume training) a scope classifier for ``model`` on ``data``, writing
    the checkpoint and the final validation to ``output``; returns the final report."""
    output = Path(output)
    kind = SERAC_CHECKPOINT
    check_output(output, kind)
    layer = feature_layer(model, anatomy, settings.layer)
    training, held_out = split_cases(data.requests, settings.val_cases, settings.seed)
    hidden = anatomy.hidden_size(model)
    spec = {
        "layer": layer,
        "hidden": hidden,
        "width": settings.width,
        "dim": settings.dim,
        "seed": settings.seed,
    }
    header = {
        "format": kind.format,
        "format_version": kind.version,
        "base": base_identity(model),
        "classifier": spec,
        "settings": settings.resumable(),
        "train_data": {
            "content_sha256": str(data.source.get("content_sha256", "")),
            "records": len(data.requests),
        },
    }
    device = next(model.parameters()).device
    validation = validation_cases(held_out, training)

    def same_run(saved: dict[str, Any]) -> None:
        check_resume(saved, header, output, _RESUME_KEYS, "SERAC", ("weights_digest",))

    if (output / kind.file).is_file():  # refuse another run before computing anything
        same_run(read_checkpoint(output, kind))
    output.mkdir(parents=True, exist_ok=True)
    with frozen(model):
        texts = scope_texts(training, validation)
        bank = FeatureBank(
            model, tokenizer, anatomy, layer, texts, progress, output / FEATURES_FILE
        )
    classifier = ScopeClassifier(hidden, settings.width, settings.dim, settings.seed).to(device)
    run = ScopeRun(
        model,
        tokenizer,
        anatomy,
        layer,
        settings,
        header,
        classifier,
        torch.optim.Adam(classifier.parameters(), lr=settings.lr),
        CaseSampler(training, settings.seed),
        validation,
        bank,
    )
    resume_saved(
        run,
        output,
        kind,
        settings.steps,
        same_run,
    )
    return train_and_report(
        run,
        model,
        output,
        kind,
        data.source,
        ("base", "classifier", "settings"),
        settings,
        progress=progress,
        on_checkpoint=on_checkpoint,
    )
