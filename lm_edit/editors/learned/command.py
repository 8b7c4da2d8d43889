"""``lm-edit train mend`` and ``lm-edit train ke``: load the model, tokenizer and edit data
the command line names and run :func:`~.training.train_mend` or
:func:`~.ke_training.train_ke`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lm_edit.core.anatomy import resolve_anatomy, split_anatomy_overrides
from lm_edit.editors.learned.editor import MendConfig
from lm_edit.editors.learned.training import train_mend

LOADING_KEYS = ("pretrained", "device", "dtype", "revision", "trust_remote_code")
"""``--model_args`` keys that load the model; the others are anatomy overrides and MEND
hyperparameters (``layers``, ``layer_count``, ``modules``)."""


def load_model(model_args: dict[str, Any]):
    """The model (eval mode, on ``device``) and tokenizer ``model_args`` name."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_edit.offline_model import resolve_pretrained

    if "pretrained" not in model_args:
        raise ValueError("--model_args needs pretrained=<model name or folder>.")
    path = resolve_pretrained(str(model_args["pretrained"]))
    options: dict[str, Any] = {}
    for key in ("revision", "trust_remote_code"):
        if key in model_args:
            options[key] = model_args[key]
    dtype = model_args.get("dtype")
    if dtype not in (None, "auto"):
        options["torch_dtype"] = getattr(torch, str(dtype))
    model = AutoModelForCausalLM.from_pretrained(path, **options)
    tokenizer = AutoTokenizer.from_pretrained(path, **options)
    return model.to(model_args.get("device", "cpu")).eval(), tokenizer


def run_train_network(
    model_args: dict[str, Any],
    train_data: str,
    output: Path,
    settings: Any,
    *,
    split: str | None = None,
    progress: bool = True,
    editor: str = "mend",
) -> dict[str, Any]:
    """Train a MEND (or, with ``editor="ke"`` and KE's settings, a KE) network as the
    command line describes; returns the final report."""
    from lm_edit.data.loading import load_edit_data
    from lm_edit.editors.learned.checkpoint import KE_CHECKPOINT, MEND_CHECKPOINT
    from lm_edit.editors.learned.ke_training import train_ke
    from lm_edit.editors.learned.run_folder import check_output
    from lm_edit.editors.registry import resolve_editor

    kind = KE_CHECKPOINT if editor == "ke" else MEND_CHECKPOINT
    check_output(Path(output), kind)  # before the model loads; the training checks again
    rest = {k: v for k, v in model_args.items() if k not in LOADING_KEYS}
    anatomy_overrides, hyperparameters = split_anatomy_overrides(rest)
    data = load_edit_data(train_data, split=split)
    model, tokenizer = load_model(model_args)
    config = resolve_editor(editor, model, hyperparameters).config
    assert isinstance(config, MendConfig)
    if config.editor_checkpoint is not None:
        raise ValueError(f"editor_checkpoint is what lm-edit train {editor} writes; use --output.")
    anatomy = resolve_anatomy(model, anatomy_overrides)
    train = train_ke if editor == "ke" else train_mend
    return train(model, tokenizer, data, output, settings, config, anatomy, progress=progress)
