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

from lm_edit.editors.learned.checkpoint import CheckpointKind, read_checkpoint, save_checkpoint
from lm_edit.editors.learned.run_folder import OutputFolderError, describe_difference

logger = logging.getLogger(__name__)


class TrainingRun(Protocol):
    """One editor's training run as the loop drives it."""

    step: int
    history: list[dict[str, Any]]

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
