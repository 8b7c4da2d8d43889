"""The training loop every ``lm-edit train <editor>`` shares: resume from the folder's
checkpoint when it holds one of the same run, step, validate every ``val_every`` steps,
and write the checkpoint atomically every ``checkpoint_every`` steps and after the last.
What one step does, and what a checkpoint holds, is the editor's (:class:`TrainingRun`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from lm_edit.editors.learned.checkpoint import (
    CheckpointKind,
    network_state,
    read_checkpoint,
    save_checkpoint,
)
from lm_edit.editors.learned.run_folder import OutputFolderError, describe_difference

logger = logging.getLogger(__name__)


class TrainingRun(Protocol):
    """One editor's training run as the loop drives it."""

    step: int
    history: list[dict[str, Any]]
    header: dict[str, Any]
    validation: list[Any]

    def train_step(self) -> dict[str, float]:
        """One optimiser update; the losses to show."""
        ...

    def validate(self) -> dict[str, Any]:
        """Scores on the held-out cases."""
        ...

    def checkpoint(self) -> dict[str, Any]:
        """Everything a resumed run needs, as plain tensors and values."""
        ...

    def resume(self, checkpoint: dict[str, Any]) -> None:
        """Continue from ``checkpoint`` (already checked against this run)."""
        ...


class CheckpointedRun:
    """The checkpoint and resume of a run that trains one module (``trained``) with one
    optimiser over a :class:`~.training.CaseSampler`; a subclass supplies those and the
    ``header`` every checkpoint starts with."""

    header: dict[str, Any]
    optimizer: torch.optim.Optimizer
    sampler: Any
    step: int
    history: list[dict[str, Any]]

    @property
    def trained(self) -> torch.nn.Module:
        """The module the run trains."""
        raise NotImplementedError

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint of the run as it stands."""
        return {
            **self.header,
            "state": network_state(self.trained),
            "step": self.step,
            "training": {
                "optimizer": optimizer_state(self.optimizer),
                "sampler": self.sampler.state(),
                "history": list(self.history),
            },
        }

    def resume(self, checkpoint: dict[str, Any]) -> None:
        """Continue from ``checkpoint`` (already checked against the header)."""
        self.trained.load_state_dict(checkpoint["state"])
        load_optimizer(self.optimizer, checkpoint["training"]["optimizer"])
        self.sampler.load(checkpoint["training"]["sampler"])
        self.history = list(checkpoint["training"]["history"])
        self.step = int(checkpoint["step"])


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[int, dict[str, torch.Tensor]]:
    """The optimiser's per-parameter state as CPU copies (the groups are rebuilt)."""
    state = optimizer.state_dict()["state"]
    return {
        int(i): {k: v.detach().to("cpu", copy=True) for k, v in s.items()} for i, s in state.items()
    }


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict[int, dict]) -> None:
    """Put back what :func:`optimizer_state` saved."""
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": dict(state), "param_groups": groups})


def check_resume(
    saved: dict[str, Any],
    header: dict[str, Any],
    output: Path,
    keys: Iterable[str],
    label: str,
    hidden: Iterable[str] = (),
) -> None:
    """Refuse to continue a run whose model, data or settings (``keys`` of the header)
    differ from these; ``hidden`` keys of a nested dict are left out of the message."""
    for key in keys:
        if saved.get(key) != header[key]:
            first, second = saved.get(key) or {}, header[key]
            if isinstance(first, dict) and isinstance(second, dict):
                first = {k: v for k, v in first.items() if k not in hidden}
                second = {k: v for k, v in second.items() if k not in hidden}
                difference = describe_difference(first, second)
            else:
                difference = f"{first!r} (run) vs {second!r} (now)"
            raise OutputFolderError(
                f"--output {output} holds a {label} run with another {key.replace('_', ' ')}: "
                f"{difference or 'edited weights differ'}. Resume it with the same model, "
                "data and settings (only --steps may change), or choose a new folder."
            )


def resume_saved(
    run: TrainingRun,
    output: Path,
    kind: CheckpointKind,
    steps: int,
    check: Callable[[dict[str, Any]], None],
) -> None:
    """Continue ``run`` from the checkpoint in ``output`` when there is one (``check``
    refuses one of another run)."""
    if not (output / kind.file).is_file():
        return
    saved = read_checkpoint(output, kind)
    check(saved)
    if int(saved["step"]) > steps:
        raise OutputFolderError(
            f"--output {output} holds a run at step {saved['step']}, beyond --steps "
            f"{steps}; pass --steps {saved['step']} or more, or a new folder."
        )
    run.resume(saved)
    logger.info("%s: resuming %s from step %d", kind.editor, output, run.step)


def train_loop(
    run: TrainingRun,
    output: Path,
    kind: CheckpointKind,
    *,
    steps: int,
    val_every: int,
    checkpoint_every: int | None,
    progress: bool,
    on_checkpoint: Callable[[int], None] | None = None,
) -> None:
    """Step ``run`` up to ``steps``, validating and checkpointing on schedule."""
    every = checkpoint_every or val_every
    bar = tqdm(
        total=steps,
        initial=run.step,
        desc=f"train {kind.editor}",
        unit="step",
        disable=not progress,
    )
    with bar:
        while run.step < steps:
            losses = run.train_step()
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
            if run.step % val_every == 0:
                scores = {"step": run.step, **run.validate()}
                run.history.append(scores)
                logger.info("%s validation: %s", kind.editor, scores)
            if run.step % every == 0 or run.step == steps:
                save_checkpoint(run.checkpoint(), output, kind)
                if on_checkpoint is not None:
                    on_checkpoint(run.step)


def train_and_report(
    run: TrainingRun,
    model: torch.nn.Module,
    output: Path,
    kind: CheckpointKind,
    train_data: dict[str, Any],
    described: tuple[str, ...],
    settings: Any,
    *,
    progress: bool,
    on_checkpoint: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the run's description (``training.json``: the data's provenance, the
    validation case ids and the ``described`` keys of its header), train to
    ``settings.steps`` with the model frozen, validate once more and write the report;
    returns it (the last step's validation is not repeated)."""
    from lm_edit.core.training import frozen
    from lm_edit.editors.learned.run_folder import REPORT_FILE, RUN_FILE, write_json

    output.mkdir(parents=True, exist_ok=True)
    description = {
        "kind": kind.command,
        "format_version": kind.version,
        "train_data": train_data,
        "validation_case_ids": [c.request.case_id for c in run.validation],
        **{k: run.header[k] for k in described},
    }
    write_json(description, output, RUN_FILE)
    with frozen(model):
        train_loop(
            run,
            output,
            kind,
            steps=settings.steps,
            val_every=settings.val_every,
            checkpoint_every=settings.checkpoint_every,
            progress=progress,
            on_checkpoint=on_checkpoint,
        )
        if run.history and run.history[-1].get("step") == run.step:
            final = dict(run.history[-1])  # the last step was just validated
        else:
            final = {"step": run.step, **run.validate()}
    report = {"final": final, "history": run.history, "checkpoint": kind.file}
    write_json(report, output, REPORT_FILE)
    logger.info("%s: final validation at step %d: %s", kind.editor, run.step, final)
    return report
