"""Shared by the MEND tests: a tiny edit data set in CounterFact's JSON format, and short
training runs of MEND's network on the tiny random Llama of ``tests/conftest.py``."""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import fields
from pathlib import Path

from lm_edit.core.anatomy import resolve_anatomy
from lm_edit.data.loading import EditData, load_edit_data
from lm_edit.data.requests import EditRequest
from lm_edit.editors.learned import MendConfig
from lm_edit.editors.learned.training import TrainSettings, train_mend
from tests.conftest import make_tiny_model


def _case(case_id: int, template: str, subject: str, new: str, true: str, **extra) -> dict:
    return {
        "case_id": case_id,
        "requested_rewrite": {
            "prompt": template,
            "subject": subject,
            "target_new": {"str": new},
            "target_true": {"str": true},
        },
        "paraphrase_prompts": extra.get("paraphrases", []),
        "neighborhood_prompts": extra.get("neighbours", []),
        "attribute_prompts": [],
        "generation_prompts": [],
    }


COUNTERFACT = [
    _case(
        1,
        "{} is located in the city of",
        "The Eiffel Tower",
        "Rome",
        "Paris",
        paraphrases=["Where is The Eiffel Tower? It is in the city of"],
        neighbours=["The Colosseum is located in the city of"],
    ),
    _case(
        2,
        "{} is a car company from",
        "Toyota",
        "Germany",
        "Japan",
        neighbours=["Volkswagen is a car company from"],
    ),
    _case(
        3,
        "{} plays the sport of",
        "Michael Jordan",
        "football",
        "basketball",
        paraphrases=["The sport {} plays is"],
    ),
    _case(4, "{} is a native speaker of", "Danielle Darrieux", "Japan", "French"),
    _case(
        5,
        "{} is located in the city of",
        "The Colosseum",
        "Paris",
        "Rome",
        neighbours=["The Eiffel Tower is located in the city of"],
    ),
    _case(6, "{} plays", "Lionel Messi", "basketball", "football"),
]
"""Six CounterFact records (ROME's format), some with paraphrases and neighbourhoods."""

QUICK = {
    "steps": 6,
    "batch_size": 2,
    "lr": 1e-3,
    "lr_lr": 1e-2,
    "c_edit": 1.0,
    "val_every": 3,
    "val_cases": 2,
    "checkpoint_every": 2,
}
"""Settings of a short run on :data:`COUNTERFACT` (about a second on one CPU thread)."""


def write_counterfact(folder: Path) -> Path:
    """:data:`COUNTERFACT` as a JSON file in ``folder``."""
    path = folder / "counterfact_tiny.json"
    path.write_text(json.dumps(COUNTERFACT, indent=1), encoding="utf-8")
    return path


def train_tiny(
    tokenizer,
    data: EditData | Path,
    output: Path,
    *,
    on_checkpoint=None,
    config: MendConfig | None = None,
    trainer=train_mend,
    **settings,
) -> dict:
    """Train on the tiny Llama (seed 0) with ``trainer`` (MEND's by default, with
    :data:`QUICK` and ``settings``; another trainer takes its ``settings=`` object)."""
    model = make_tiny_model("llama", len(tokenizer))
    if isinstance(data, Path):
        data = load_edit_data(str(data))
    run_settings = settings.pop("settings", None) or TrainSettings(**{**QUICK, **settings})
    return trainer(
        model,
        tokenizer,
        data,
        output,
        run_settings,
        config or MendConfig(),
        resolve_anatomy(model),
        progress=False,
        on_checkpoint=on_checkpoint,
    )


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lifecycle_checkpoint(tokenizer, folder: Path, requests: list[EditRequest]) -> Path:
    """A network trained on ``requests`` (and two more cases held out) until its one-step
    edits take on the tiny Llama, for the registry-wide lifecycle test."""
    extra = [
        EditRequest("x", "Michael Jordan plays the sport of", "Michael Jordan", "football"),
        EditRequest("y", "Danielle Darrieux is a native speaker of", "Danielle Darrieux", "Japan"),
    ]
    data = EditData([*requests, *extra], {"content_sha256": "lifecycle"})
    # The KL covers every position of the unrelated text (the prediction of the answer's
    # first token included). With EasyEdit's positions, the first request's edit takes
    # on this tiny model, but after the second neither request's target is the answer.
    held_out = {"val_cases": 1, "seed": 0, "locality_positions": "all"}
    train_tiny(tokenizer, data, folder, steps=30, val_every=30, checkpoint_every=30, **held_out)
    return folder


def serac_lifecycle_checkpoint(tokenizer, folder: Path, requests: list[EditRequest]) -> Path:
    """A scope classifier for the tiny Llama after a short run on ``requests`` and two more
    cases (a request's own prompt is in its scope whatever the classifier learned)."""
    from lm_edit.editors.serac.training import SeracTrainSettings, train_serac

    extra = [
        EditRequest("x", "Michael Jordan plays the sport of", "Michael Jordan", "football"),
        EditRequest("y", "Danielle Darrieux is a native speaker of", "Danielle Darrieux", "Japan"),
    ]
    data = EditData([*requests, *extra], {"content_sha256": "lifecycle"})
    model = make_tiny_model("llama", len(tokenizer))
    settings = SeracTrainSettings(steps=4, batch_size=2, val_every=4, val_cases=1)
    train_serac(model, tokenizer, data, folder, settings, resolve_anatomy(model), progress=False)
    return folder


KE_QUICK = {
    "steps": 6,
    "batch_size": 2,
    "lr": 1e-2,
    "c_edit": 1.0,
    "hidden_dim": 32,
    "condition_dim": 32,
    "val_every": 3,
    "val_cases": 2,
    "checkpoint_every": 2,
}
"""Settings of a short KE run on :data:`COUNTERFACT` on the tiny Llama (small networks)."""


def train_tiny_ke(
    tokenizer, data: EditData | Path, output: Path, *, on_checkpoint=None, **settings
):
    """Train KE's network on the tiny Llama (seed 0) with :data:`KE_QUICK` and ``settings``."""
    from lm_edit.editors.learned.ke_training import KeTrainSettings, train_ke

    quick = KeTrainSettings(**{**KE_QUICK, **settings})
    return train_tiny(
        tokenizer, data, output, on_checkpoint=on_checkpoint, trainer=train_ke, settings=quick
    )


def ke_lifecycle_checkpoint(tokenizer, folder: Path, requests: list[EditRequest]) -> Path:
    """A KE network trained on ``requests`` (and two more cases) until its edits take on
    the tiny Llama, for the registry-wide lifecycle test."""
    extra = [
        EditRequest("x", "Michael Jordan plays the sport of", "Michael Jordan", "football"),
        EditRequest("y", "Danielle Darrieux is a native speaker of", "Danielle Darrieux", "Japan"),
    ]
    data = EditData([*requests, *extra], {"content_sha256": "lifecycle"})
    train_tiny_ke(
        tokenizer,
        data,
        folder,
        steps=100,
        val_every=100,
        checkpoint_every=100,
        val_cases=1,
        locality_positions="all",  # as lifecycle_checkpoint's
    )
    return folder


def assert_flags_are_settings(flags: dict[str, tuple[type, str]], settings_class: type) -> None:
    """The command line's ``flags`` are ``settings_class``'s fields, in order, each parsed
    as its field's type (a literal's values' type)."""
    hints = typing.get_type_hints(settings_class)
    assert list(flags) == [f.name for f in fields(settings_class)]
    for name, (kind, _) in flags.items():
        hint = hints[name]
        options = typing.get_args(hint)
        if typing.get_origin(hint) is typing.Literal:
            options = tuple({type(option) for option in options})
        assert kind in (hint, *options), name
