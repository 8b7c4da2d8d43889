"""Every registered editor satisfies the lifecycle: the edit takes, undo is exact (weights,
modules and hooks), a failing batch leaves nothing behind, the same seed gives the same
weights, and bad hyperparameters are refused by name. The tests walk the registry and the
editor YAMLs, so an editor is covered the day it is added (an editor that learns to edit
also needs a line in :data:`TRAINED`: how to train its network for the tiny model)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest
import torch

from lm_edit.core.arguments import RESERVED_NAMES, argument
from lm_edit.core.prompts import prompt_hooks, rewrite_prompt
from lm_edit.core.record import EditRecord, temporarily_unedited
from lm_edit.data.requests import EditRequest
from lm_edit.editors import Editor, EditorConfig, known_editors, register_editor
from lm_edit.editors.learned import KeEditor, MendEditor
from lm_edit.editors.registry import implementation_of, implementations
from lm_edit.editors.serac import SeracEditor
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.mend_fixtures import (
    ke_lifecycle_checkpoint,
    lifecycle_checkpoint,
    serac_lifecycle_checkpoint,
)

# The subject ends each prompt: on a tiny random model the subject's last token is then
# also the position the answer is read from, where a one-layer edit reliably takes.
REQUESTS = [
    EditRequest("a", "The city named after Eiffel Tower", "Eiffel Tower", "Rome", "Paris"),
    EditRequest("b", "The country known for Toyota", "Toyota", "Germany", "Japan"),
]
EDITORS = known_editors()


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _structure(model) -> list[tuple[str, str, int, int]]:
    """Every module's path, type and hook counts, and the model's prompt hooks: what an
    added module, forward hook or in-context edit changes."""
    return [
        (name, type(m).__name__, len(m._forward_hooks), len(m._forward_pre_hooks))
        for name, m in model.named_modules()
    ] + [("prompt hooks", "", len(prompt_hooks(model)), 0)]


def _same_state(before: dict[str, torch.Tensor], model) -> bool:
    after = model.state_dict()
    return set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def _logits(model, tokenizer, prompt: str) -> torch.Tensor:
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits[0, -1]


def _first_token(tokenizer, target: str) -> int:
    return tokenizer(" " + target)["input_ids"][0]


def _stream(name: str, model, tokenizer, seed: int = 0, trained=None) -> EditStream:
    settings = {**implementation_of(name).quick_settings, **(trained(name) if trained else {})}
    return EditStream.create(model, tokenizer, name, seed=seed, **settings)


TRAINED = {
    MendEditor: lifecycle_checkpoint,
    KeEditor: ke_lifecycle_checkpoint,
    SeracEditor: serac_lifecycle_checkpoint,
}
"""Editors that learn to edit, and how to train a network for the tiny Llama whose
one-step edits of :data:`REQUESTS` take."""


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_tokenizer):
    """``trained(name)``: the settings editor ``name`` needs beyond its quick settings (a
    checkpoint, trained on first use), else none."""
    made: dict[type, dict] = {}

    def settings(name: str) -> dict:
        editor = implementation_of(name)
        if editor not in TRAINED:
            return {}
        if editor not in made:
            folder = tmp_path_factory.mktemp(editor.__name__)
            checkpoint = TRAINED[editor](tiny_tokenizer, folder, REQUESTS)
            made[editor] = {"editor_checkpoint": str(checkpoint)}
        return made[editor]

    return settings


def test_every_editor_yaml_names_a_registered_implementation():
    registered = implementations()
    assert {"locate", "none"} <= set(registered)
    for name in EDITORS:
        assert implementation_of(name) in registered.values()


@pytest.mark.parametrize("name", EDITORS)
def test_edit_takes_and_undo_is_exact(name, tiny_tokenizer, isolated_cache, trained):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before, structure = _state(model), _structure(model)
    logits = [_logits(model, tiny_tokenizer, r.prompt) for r in REQUESTS]
    stream = _stream(name, model, tiny_tokenizer, trained=trained)
    stream.apply(REQUESTS, batch_size=1, progress=False)
    edited = _state(model)
    if stream.editor.changes_outputs:
        for request in REQUESTS:
            answer = int(_logits(model, tiny_tokenizer, request.prompt).argmax())
            assert answer == _first_token(tiny_tokenizer, request.target_new), request.case_id
    if stream.editor.changes_prompts:  # the edit is in the prompt the wrapper serves
        for request in REQUESTS:
            asked = rewrite_prompt(model, request.prompt)
            assert asked.text.endswith(request.prompt) and asked.added_tokens > 0
            assert request.target_new in asked.text, request.case_id
    else:
        assert not prompt_hooks(model)
    with temporarily_unedited(model, stream.records):
        assert _same_state(before, model) and _structure(model) == structure
    assert _same_state(edited, model)
    stream.undo()
    assert _same_state(before, model)
    assert _structure(model) == structure
    for request, expected in zip(REQUESTS, logits, strict=True):
        assert torch.equal(_logits(model, tiny_tokenizer, request.prompt), expected)
        assert rewrite_prompt(model, request.prompt).text == request.prompt


@pytest.mark.parametrize("name", EDITORS)
def test_a_batch_that_fails_leaves_the_model_as_it_was(
    name, tiny_tokenizer, isolated_cache, monkeypatch, trained
):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = _stream(name, model, tiny_tokenizer, trained=trained)
    stream.apply(REQUESTS[:1], progress=False)
    after_first, structure = _state(model), _structure(model)
    edit = type(stream.editor).edit

    def edit_then_fail(self, *args, **kwargs):
        edit(self, *args, **kwargs)
        raise KeyboardInterrupt("interrupted after the last change")

    monkeypatch.setattr(type(stream.editor), "edit", edit_then_fail)
    with pytest.raises(KeyboardInterrupt):
        stream.apply(REQUESTS[1:], progress=False)
    assert _same_state(after_first, model) and _structure(model) == structure
    assert len(stream.records) == 1


@pytest.mark.parametrize("name", EDITORS)
def test_same_seed_gives_identical_weights(name, tiny_tokenizer, isolated_cache, trained):
    states = []
    for _ in range(2):
        model = make_tiny_model("llama", len(tiny_tokenizer))
        _stream(name, model, tiny_tokenizer, seed=3, trained=trained).apply(
            REQUESTS, progress=False
        )
        states.append(_state(model))
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def _out_of_range(spec) -> object | None:
    """A value just outside a field's declared bounds (None when it has none)."""
    for key, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
        if key in spec.metadata:
            return spec.metadata[key] + step
    return None


@pytest.mark.parametrize("name", EDITORS)
def test_bad_hyperparameters_are_refused_by_name(name, tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(ValueError, match=r"Unknown hyperparameter\(s\) not_a_setting"):
        EditStream.create(model, tiny_tokenizer, name, not_a_setting=1)
    for spec in fields(implementation_of(name).config_class):
        bad = _out_of_range(spec)
        if bad is None:
            continue
        with pytest.raises(ValueError, match=rf"{spec.name}=.*out of range"):
            EditStream.create(model, tiny_tokenizer, name, **{spec.name: bad})


def test_a_hyperparameter_named_like_a_model_argument_is_refused_at_definition():
    @dataclass(frozen=True)
    class Clashing(EditorConfig):
        batch_size: int = argument(4, ge=1)

    class ClashingEditor(Editor):
        config_class = Clashing

        def edit(self, model, tokenizer, requests, record: EditRecord) -> None:
            pass

    with pytest.raises(TypeError, match="batch_size would collide"):
        register_editor("clashing")(ClashingEditor)
    assert "clashing" not in implementations()
    assert {"batch_size", "max_length", "device", "n_edits", "layers_module"} <= RESERVED_NAMES


def test_reserved_names_cover_every_hflm_argument():
    import inspect

    from lm_eval.models.huggingface import HFLM

    hflm = set(inspect.signature(HFLM.__init__).parameters) - {"self", "kwargs"}
    assert hflm <= RESERVED_NAMES, sorted(hflm - RESERVED_NAMES)


def test_an_editor_that_cannot_batch_says_so(tiny_tokenizer):
    class OneAtATime(Editor):
        can_batch = False

        def edit(self, model, tokenizer, requests, record: EditRecord) -> None:
            pass

    editor = OneAtATime(EditorConfig(), name="one", anatomy=None)
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(ValueError, match="one request at a time.*edit_batch_size=1"):
        editor.apply(model, tiny_tokenizer, REQUESTS)


def test_added_modules_and_hooks_are_undone_and_counted(tiny_tokenizer):
    """The undo actions an adapter or a codebook editor uses, on their own."""
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before, structure = _state(model), _structure(model)
    logits = _logits(model, tiny_tokenizer, REQUESTS[0].prompt)
    record = EditRecord("test", ["a"])
    down = model.get_submodule("model.layers.1.mlp.down_proj")
    wrapper = torch.nn.Sequential(down, torch.nn.Linear(32, 32))
    record.set_module(model, "model.layers.1.mlp.down_proj", wrapper)
    record.set_module(model, "model.layers.1.side_memory", torch.nn.Linear(4, 4, bias=False))
    record.add_hook(model, "model.layers.2", lambda module, args, output: output)
    assert record.added_parameters() == 32 * 32 + 32 + 16
    assert not record.weights_only
    assert record.summary()["added_modules"] == [
        "model.layers.1.mlp.down_proj",
        "model.layers.1.side_memory",
    ]
    assert not torch.equal(_logits(model, tiny_tokenizer, REQUESTS[0].prompt), logits)
    record.undo(model)
    assert _same_state(before, model) and _structure(model) == structure
    assert model.get_submodule("model.layers.1.mlp.down_proj") is down
    assert torch.equal(_logits(model, tiny_tokenizer, REQUESTS[0].prompt), logits)
