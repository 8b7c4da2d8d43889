"""Every argument is checked where it enters, with a message naming the argument, the
value and what is allowed; inputs the model cannot take are refused before anything
changes; an edit interrupted between two layers leaves nothing behind."""

from __future__ import annotations

import pytest
import torch

from lm_edit.data.loading import load_edit_requests
from lm_edit.data.requests import EditRequest
from lm_edit.editors.registry import resolve_editor
from lm_edit.evaluation.model import split_model_args
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model

FAST = {
    "v_num_grad_steps": 3,
    "stats_model_samples": 8,
    "stats_max_length": 24,
    "template_spec": [[3, 2]],
}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_edits": 2.5}, "n_edits must be an integer or one of 'all', got 2.5"),
        ({"n_edits": "abc"}, "n_edits must be an integer or one of 'all', got 'abc'"),
        ({"n_edits": 0}, "n_edits=0 is out of range; it must be >= 1"),
        ({"edit_seed": "abc"}, "edit_seed must be an integer, got 'abc'"),
        ({"edit_batch_size": 0}, "edit_batch_size=0 is out of range; it must be >= 1"),
        ({"generation_batch_size": 0}, "generation_batch_size=0 is out of range"),
        ({"individual_scores": "maybe"}, "individual_scores must be true or false, got 'maybe'"),
        ({"v_lrr": 0.1}, "unknown argument 'v_lrr'; did you mean 'v_lr'?"),
    ],
)
def test_edited_hf_arguments_are_checked_by_name(arguments, message):
    with pytest.raises(ValueError, match="edited-hf: ") as caught:
        split_model_args({"editor": "rome", **arguments})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("editor", "overrides", "message"),
    [
        ("rome", {"v_lr": 0}, "v_lr=0.0 is out of range; it must be > 0"),
        ("rome", {"v_num_grad_steps": 0}, "v_num_grad_steps=0 is out of range; it must be >= 1"),
        ("rome", {"clamp_norm_factor": -1}, "clamp_norm_factor=-1.0 is out of range"),
        ("memit", {"stats_ridge": -1}, "stats_ridge=-1.0 is out of range; it must be >= 0"),
        ("memit", {"layers": "a;b"}, "layers must be a list (separated by ';') of: an integer"),
        ("rome", {"solver": "exact"}, "solver must be one of 'equality', 'least_squares'"),
        ("rome", {"template_spec": "[[5,-1]]"}, "each entry must be [length, count]"),
        ("rome", {"stats_source": "/no/such/file.txt"}, "nor an existing text file"),
    ],
)
def test_editor_hyperparameters_are_checked_by_name(editor, overrides, message, tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(ValueError, match=f"editor '{editor}': ") as caught:
        resolve_editor(editor, model, overrides=overrides)
    assert message in str(caught.value)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_binary_data_file_is_named(tmp_path, suffix):
    path = tmp_path / f"edits{suffix}"
    path.write_bytes(b"\x00\xff\xfe" + bytes(range(256)))
    with pytest.raises(ValueError, match=f"Edit data file {path} is not UTF-8 text"):
        load_edit_requests(str(path))


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(before, model) -> bool:
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_prompt_longer_than_the_context_is_refused_before_any_change(
    tiny_tokenizer, isolated_cache
):
    model = make_tiny_model("gpt2", len(tiny_tokenizer))  # 128 positions
    before = _state(model)
    long = EditRequest("long", "Paris " * 150 + "Toyota", "Toyota", "Germany", "Japan")
    stream = EditStream.create(model, tiny_tokenizer, "rome", layers=[1], **FAST)
    with pytest.raises(ValueError, match="request 'long' needs .* tokens .* at most 128"):
        stream.apply([long], progress=False)
    assert _unchanged(before, model) and not stream.records


@pytest.mark.parametrize("editor", ["memit", "alphaedit", "pmet", "emmet"])
def test_one_key_with_two_targets_in_a_batch_is_refused(editor, tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    requests = [
        EditRequest("a", "Toyota is a car company from", "Toyota", "Germany", "Japan"),
        EditRequest("b", "Toyota is a car company from", "Toyota", "France", "Japan"),
    ]
    stream = EditStream.create(model, tiny_tokenizer, editor, layers=[1, 2], **FAST)
    with pytest.raises(ValueError, match="requests 'a' and 'b' of one batch ask 'Toyota'"):
        stream.apply(requests, batch_size=2, progress=False)
    assert _unchanged(before, model)


def test_an_edit_interrupted_between_two_layers_leaves_nothing_behind(
    tiny_tokenizer, isolated_cache, monkeypatch
):
    from lm_edit.editors.locate.editor import LocateEditor

    model = make_tiny_model("llama", len(tiny_tokenizer))
    original = _state(model)
    requests = [
        EditRequest("a", "The city named after Eiffel Tower", "Eiffel Tower", "Rome", "Paris"),
        EditRequest("b", "The country known for Toyota", "Toyota", "Germany", "Japan"),
    ]
    stream = EditStream.create(model, tiny_tokenizer, "memit", layers=[1, 2], **FAST)
    stream.apply(requests[:1], progress=False)
    after_first = _state(model)
    edit_layer = LocateEditor._edit_layer
    calls = []

    def fail_on_the_second_layer(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("interrupted between two layers")
        return edit_layer(self, *args, **kwargs)

    monkeypatch.setattr(LocateEditor, "_edit_layer", fail_on_the_second_layer)
    with pytest.raises(KeyboardInterrupt):
        stream.apply(requests[1:], progress=False)
    assert len(calls) == 2  # the first layer of the second batch was written
    assert _unchanged(after_first, model) and len(stream.records) == 1
    stream.undo()
    assert _unchanged(original, model)


def test_another_editors_hyperparameter_is_refused_by_name():
    """``cache_values`` belongs to the locate family: FT-L names it instead of handing it
    to ``from_pretrained``."""
    with pytest.raises(ValueError, match=r"'ft-l' does not take cache_values"):
        split_model_args({"editor": "ft-l", "cache_values": "true"})
