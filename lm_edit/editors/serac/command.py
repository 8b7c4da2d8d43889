"""``lm-edit train serac``: load the model, tokenizer and edit data the command line
names and run :func:`~.training.train_serac`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lm_edit.core.anatomy import resolve_anatomy, split_anatomy_overrides
from lm_edit.editors.learned.command import LOADING_KEYS, load_model
from lm_edit.editors.serac.checkpoint import SERAC_CHECKPOINT
from lm_edit.editors.serac.training import SeracTrainSettings, train_serac


def run_train_serac(
    model_args: dict[str, Any],
    train_data: str,
    output: Path,
    settings: SeracTrainSettings,
    *,
    split: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a scope classifier as the command line describes; returns the final report."""
    from lm_edit.data.loading import load_edit_data
    from lm_edit.editors.learned.run_folder import check_output

    check_output(Path(output), SERAC_CHECKPOINT)  # before the model loads
    rest = {k: v for k, v in model_args.items() if k not in LOADING_KEYS}
    anatomy_overrides, unknown = split_anatomy_overrides(rest)
    if unknown:
        raise ValueError(
            f"--model_args: {', '.join(sorted(unknown))} is not a loading or anatomy argument; "
            "the classifier's own settings are flags (see lm-edit train serac --help)."
        )
    data = load_edit_data(train_data, split=split)
    model, tokenizer = load_model(model_args)
    anatomy = resolve_anatomy(model, anatomy_overrides)
    return train_serac(model, tokenizer, data, output, settings, anatomy, progress=progress)
