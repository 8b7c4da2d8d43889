"""Training MEND's network (``lm-edit train mend``), after EasyEdit's ``EditTrainer``.

The edit data is shuffled with ``seed``; the first ``val_cases`` cases are held out for
validation, the rest train. Each step takes the next ``batch_size`` training cases (an
epoch is a random permutation of them), edits the unedited model for each case alone
(:func:`~.objective.edit_and_score`), and back-propagates
``(c_edit · edit loss + c_loc · locality KL) / batch_size`` into the network and the
step sizes (the KL averaged at ``locality_positions``: the unrelated answer's, as
EasyEdit's trainer, or ``all``); then the gradient norm is clipped to ``grad_clip`` and
Adam steps (``lr`` for the network, ``lr_lr`` for the step sizes). The locality text of
a case is one of its locality probes (prompt and answer), or, for a case without, another
training case's fact, drawn from the run's random generator.

Every ``val_every`` steps the network is validated (:mod:`.validation`); every
``checkpoint_every`` steps (default: ``val_every``) and after the last one the checkpoint
is written atomically (:mod:`.checkpoint`) with the optimiser's state, the generator's
state, the epoch order and the validation history, so a run started again with the same
settings continues from its last checkpoint and ends with the same bytes as an
uninterrupted one. Nothing in a checkpoint depends on time, paths or ``steps``. The final
validation is written to ``validation.json``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.core.arguments import argument, check_bounds, coerce
from lm_edit.data.loading import EditData
from lm_edit.data.requests import EditRequest
from lm_edit.editors.learned.checkpoint import (
    MEND_CHECKPOINT,
    CheckpointKind,
    model_identity,
)
from lm_edit.editors.learned.editor import MendConfig, chosen_weights
from lm_edit.editors.learned.factors import EditedWeight
from lm_edit.editors.learned.loop import (
    CheckpointedRun,
    check_resume,
    resume_saved,
    train_and_report,
)
from lm_edit.editors.learned.network import MendNetwork
from lm_edit.editors.learned.objective import EditCase, LocalityPositions, edit_and_score
from lm_edit.editors.learned.run_folder import (
    check_output,
)
from lm_edit.editors.learned.validation import validate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkTrainSettings:
    """The settings every network-training run (MEND's, KE's) has; ``steps`` counts
    optimiser updates of ``batch_size`` edits each."""

    command: ClassVar[str] = "lm-edit train"

    steps: int = argument(10_000, ge=1, help="optimiser updates")
    batch_size: int = argument(10, ge=1, help="edits per update")
    lr: float = argument(1e-6, gt=0, help="Adam learning rate of the network")
    c_edit: float = argument(0.1, ge=0, help="weight of the edit loss")
    c_loc: float = argument(1.0, ge=0, help="weight of the locality KL")
    locality_positions: LocalityPositions = "answer"
    grad_clip: float = argument(100.0, gt=0, help="largest gradient norm")
    val_every: int = argument(100, ge=1, help="steps between validations")
    val_cases: int = argument(100, ge=1, help="held-out validation cases")
    checkpoint_every: int | None = argument(None, ge=1, help="default: val_every")
    seed: int = 0

    def __post_init__(self) -> None:
        check_bounds(self, self.command)
        coerce(self.locality_positions, LocalityPositions, f"{self.command}: locality_positions")

    def resumable(self) -> dict[str, Any]:
        """Every setting a resumed run must share (all but ``steps``)."""
        out = asdict(self)
        out.pop("steps")
        out["checkpoint_every"] = self.checkpoint_every or self.val_every
        return out


@dataclass(frozen=True)
class TrainSettings(NetworkTrainSettings):
    """Settings of a MEND training run (EasyEdit's ``hparams/TRAINING/MEND`` values: the
    reference's 100,000 single edits with ``accumulate_bs`` 10 are 10,000 steps)."""

    command: ClassVar[str] = "lm-edit train mend"

    lr_lr: float = argument(1e-4, gt=0, help="Adam learning rate of the step sizes")
    edit_lr: float = argument(1e-4, gt=0, help="initial step size of every edited weight")
    rank: int = argument(1920, ge=1, help="rank of the network's layers")
    n_hidden: int = argument(1, ge=0, help="hidden layers of the network")


def split_cases(
    requests: list[EditRequest], val_cases: int, seed: int
) -> tuple[list[EditRequest], list[EditRequest]]:
    """(training, validation) cases: shuffled with ``seed``, the first ``val_cases`` held out."""
    if val_cases >= len(requests):
        raise ValueError(
            f"--val_cases {val_cases} leaves no training case: the data has {len(requests)} "
            "cases. Pass fewer validation cases or more data."
        )
    order = list(range(len(requests)))
    random.Random(seed).shuffle(order)
    shuffled = [requests[i] for i in order]
    return shuffled[val_cases:], shuffled[:val_cases]


def fact(request: EditRequest) -> tuple[str, str]:
    """A request's prompt with its original answer (the new one when none is known)."""
    return request.prompt, request.target_true or request.target_new


def validation_cases(cases: list[EditRequest], pool: list[EditRequest]) -> list[EditCase]:
    """Each validation case with its first locality probe, else the next case's fact."""
    out = []
    for index, request in enumerate(cases):
        if request.locality:
            unrelated = (request.locality[0].prompt, request.locality[0].answer)
        else:
            others = [r for r in cases[index + 1 :] + cases[:index] + pool if r is not request]
            if not others:
                raise ValueError("MEND validation needs locality probes or a second case.")
            unrelated = fact(others[0])
        out.append(EditCase(request, unrelated))
    return out


class CaseSampler:
    """Training cases in epochs of random order, with a random unrelated text for each;
    its state (generator, order, position) is part of the checkpoint."""

    def __init__(self, cases: list[EditRequest], seed: int) -> None:
        if len(cases) < 2 and not any(c.locality for c in cases):
            raise ValueError(
                "MEND training needs locality probes in the data or at least two training "
                "cases (a case's locality text is another case's fact)."
            )
        self.cases = cases
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(cases), generator=self.generator)
        self.position = 0

    def next(self) -> EditCase:
        """The next case and its unrelated text."""
        if self.position == len(self.cases):
            self.order = torch.randperm(len(self.cases), generator=self.generator)
            self.position = 0
        index = int(self.order[self.position])
        self.position += 1
        request = self.cases[index]
        if request.locality:
            pick = int(torch.randint(len(request.locality), (), generator=self.generator))
            probe = request.locality[pick]
            return EditCase(request, (probe.prompt, probe.answer))
        other = int(torch.randint(len(self.cases) - 1, (), generator=self.generator))
        return EditCase(request, fact(self.cases[other + (other >= index)]))

    def state(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "order": self.order.clone(),
            "position": self.position,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])


def _optimizer(network: MendNetwork, settings: TrainSettings) -> torch.optim.Adam:
    others = [p for n, p in network.named_parameters() if n != "edit_lrs"]
    groups = [
        {"params": others, "lr": settings.lr},
        {"params": [network.edit_lrs], "lr": settings.lr_lr},
    ]
    return torch.optim.Adam(groups)


@dataclass
class Run(CheckpointedRun):
    """Everything one training run holds: what it trains, on what, and its state."""

    model: nn.Module
    tokenizer: Any
    weights: list[EditedWeight]
    settings: TrainSettings
    header: dict[str, Any]
    network: nn.Module
    optimizer: torch.optim.Optimizer
    sampler: CaseSampler
    validation: list[EditCase]
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trained(self) -> nn.Module:
        return self.network

    def train_step(self) -> dict[str, float]:
        """One optimiser update over ``batch_size`` edits; the mean losses."""
        settings = self.settings
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        edit_total = loc_total = 0.0
        for _ in range(settings.batch_size):
            case = self.sampler.next()
            out = edit_and_score(
                self.model,
                self.tokenizer,
                self.weights,
                self.network,
                case,
                settings.locality_positions,
            )
            loss = settings.c_edit * out.edit_loss + settings.c_loc * out.locality_loss
            (loss / settings.batch_size).backward()
            edit_total += float(out.edit_loss.detach())
            loc_total += float(out.locality_loss.detach())
        try:
            torch.nn.utils.clip_grad_norm_(
                self.network.parameters(), settings.grad_clip, error_if_nonfinite=True
            )
        except RuntimeError as error:
            editor = str(self.header["format"]).removeprefix("lm-edit-").upper()
            raise ValueError(
                f"{editor} training diverged at step {self.step + 1}: the gradient norm is "
                "not finite. Lower the learning rates (--lr, and MEND's --lr_lr) and start "
                "a new folder (the last checkpoint is kept)."
            ) from error
        self.optimizer.step()
        self.step += 1
        n = settings.batch_size
        return {"edit_loss": edit_total / n, "locality_kl": loc_total / n}

    def validate(self) -> dict[str, Any]:
        return validate(
            self.model,
            self.tokenizer,
            self.weights,
            self.network,
            self.validation,
            self.settings.locality_positions,
        )


def run_header(
    kind: CheckpointKind,
    model: nn.Module,
    weights: list[EditedWeight],
    network: dict[str, Any],
    settings: Any,
    data: EditData,
) -> dict[str, Any]:
    """What every checkpoint of a run starts with: its kind, the base model and edited
    weights, what rebuilds the ``network``, the settings a resumed run must share and the
    training data's identity."""
    return {
        "format": kind.format,
        "format_version": kind.version,
        "base": model_identity(model, weights),
        "network": network,
        "settings": settings.resumable(),
        "train_data": {
            "content_sha256": str(data.source.get("content_sha256", "")),
            "records": len(data.requests),
        },
    }


_RESUME_KEYS = ("base", "network", "settings", "train_data")


def _earlier_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with the settings that checkpoints written before a setting existed used:
    ``locality_positions: all``."""
    settings = saved.get("settings")
    if isinstance(settings, dict) and "locality_positions" not in settings:
        saved = {**saved, "settings": {**settings, "locality_positions": "all"}}
    return saved


def train_mend(
    model: nn.Module,
    tokenizer: Any,
    data: EditData,
    output: str | Path,
    settings: TrainSettings,
    config: MendConfig,
    anatomy: ModelAnatomy,
    *,
    progress: bool = True,
    on_checkpoint: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume training) a MEND network for ``model`` on ``data``, writing the
    checkpoint and the final validation to ``output``; returns the final report."""
    weights = chosen_weights(model, anatomy, config)
    spec = {
        "rank": settings.rank,
        "n_hidden": settings.n_hidden,
        "edit_lr": settings.edit_lr,
        "seed": settings.seed,
    }
    header = run_header(MEND_CHECKPOINT, model, weights, spec, settings, data)
    shapes = {w.name: w.shape for w in weights}
    network = MendNetwork(shapes, settings.rank, settings.n_hidden, settings.edit_lr, settings.seed)
    network = network.to(next(model.parameters()).device)
    return train_network(
        NetworkTraining(model, tokenizer, data, Path(output), MEND_CHECKPOINT, settings),
        weights,
        header,
        network,
        _optimizer(network, settings),
        progress=progress,
        on_checkpoint=on_checkpoint,
    )


@dataclass(frozen=True)
class NetworkTraining:
    """What a learned editor's training run is given: the model and tokenizer, the data,
    the folder, the checkpoint kind and the settings (MEND's or KE's)."""

    model: nn.Module
    tokenizer: Any
    data: EditData
    output: Path
    kind: CheckpointKind
    settings: Any


def train_network(
    job: NetworkTraining,
    weights: list[EditedWeight],
    header: dict[str, Any],
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    progress: bool = True,
    on_checkpoint: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train ``network`` (MEND's or KE's) with ``optimizer`` on the edits of ``job``,
    resuming from the folder's checkpoint; returns the final report."""
    settings, output, kind = job.settings, job.output, job.kind
    check_output(output, kind)
    training, held_out = split_cases(job.data.requests, settings.val_cases, settings.seed)
    run = Run(
        job.model,
        job.tokenizer,
        weights,
        settings,
        header,
        network,
        optimizer,
        CaseSampler(training, settings.seed),
        validation_cases(held_out, training),
    )
    label = kind.editor.upper()
    resume_saved(
        run,
        output,
        kind,
        settings.steps,
        lambda saved: check_resume(
            _earlier_settings(saved), header, output, _RESUME_KEYS, label, ("weights",)
        ),
    )
    return train_and_report(
        run,
        job.model,
        output,
        kind,
        job.data.source,
        ("base", "network", "settings"),
        settings,
        progress=progress,
        on_checkpoint=on_checkpoint,
    )
