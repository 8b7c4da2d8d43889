"""``lm-edit save``: apply a stream of edits and write the edited model as a plain Hugging
Face folder that ``lm_eval --model hf --model_args pretrained=<folder>`` (or
``AutoModelForCausalLM.from_pretrained``) loads.

Only edits that overwrite existing weights can be written so: an editor that adds
modules, hooks or prompt hooks (GRACE's codebook, MELO's routed LoRA, T-Patcher's and
CaliNET's neurons, IKE's demonstrations, an unmerged LoRA adapter) is refused before
anything is written, with what it added; such a model is evaluated with ``--model
edited-hf``, which re-applies the edits. The folder also holds ``lm_edit_edits.json``:
the edit session (editor, configuration, case ids in order, per-step records and the
weights' digest). It is written to a temporary folder beside the target and renamed, so
a killed save leaves no half-written model; an existing folder is replaced only with
``overwrite`` and only when it is an earlier ``lm-edit save`` output.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lm_edit.atomic import remove_stale_temps, temp_prefix

EDITS_FILE = "lm_edit_edits.json"
"""The provenance file of a saved edited model."""


class SaveError(ValueError):
    """The edited model cannot be saved as asked."""


def check_target(output: Path, overwrite: bool) -> None:
    """Refuse an output folder that holds anything but an earlier save (and that one
    without ``overwrite``)."""
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise SaveError(f"--output {output} exists and is not a folder; choose a new path.")
    if not output.exists() or not any(output.iterdir()):
        return
    if not (output / EDITS_FILE).is_file():
        raise SaveError(
            f"--output {output} is a non-empty folder that lm-edit save did not write; "
            "choose a new or empty folder (nothing was deleted)."
        )
    if not overwrite:
        raise SaveError(
            f"--output {output} already holds a saved edited model; pass --overwrite to "
            "replace it, or choose another folder."
        )


def check_weights_only(lm: Any) -> None:
    """Refuse a stream whose edits are more than weight changes."""
    for record in lm.edit_stream.records:
        if record.weights_only:
            continue
        added = [*record.modules, *record.hooks]
        if record.prompt_hooks:
            added.append(f"{record.prompt_hooks} prompt hook(s)")
        raise SaveError(
            f"Editor {lm.edit_session.editor!r} edits by adding to the model "
            f"({', '.join(added)}), not by changing its weights, so the result cannot be "
            "saved as a plain Hugging Face model that --model hf loads. Evaluate it with "
            "--model edited-hf and the same model_args, which re-applies the edits."
        )


def save_edited(model_args: dict[str, Any], output: Path, overwrite: bool = False) -> Path:
    """Apply the edits ``model_args`` describe (as ``edited-hf`` takes them) and write
    the edited model, its tokenizer and :data:`EDITS_FILE` to ``output``. Nothing is
    evaluated, so each batch's own scoring is off unless ``individual_scores`` is given."""
    from lm_edit.evaluation.model import EditedLM

    output = Path(output)
    check_target(output, overwrite)
    model_args = {"individual_scores": False, **model_args}
    lm = EditedLM(**model_args)
    check_weights_only(lm)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output.parent)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(output.name), dir=output.parent))
    try:
        lm.model.save_pretrained(staging, safe_serialization=True)
        lm.tokenizer.save_pretrained(staging)
        provenance = {"model_args": model_args, "session": lm.edit_session.manifest()}
        text = json.dumps(provenance, indent=1, default=str) + "\n"
        (staging / EDITS_FILE).write_text(text, encoding="utf-8")
        if output.exists():
            check_target(output, overwrite)
            shutil.rmtree(output)
        staging.rename(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return output
