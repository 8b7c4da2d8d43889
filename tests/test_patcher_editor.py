"""T-Patcher: the edit takes with one neuron per mistaken token beside the last MLP; the
neurons fire on their edits and stay below them on held-out prompts (the memory loss);
undo is exact; bad settings are refused by name; the record counts the added numbers."""

from __future__ import annotations

import pytest
import torch

from lm_edit.editors.added_neurons import PatcherEditor
from lm_edit.stream import EditStream
from tests.added_neuron_checks import (
    HELD_OUT,
    REQUESTS,
    adaptors,
    all_logits,
    preactivations,
    predicts,
    same_outputs,
    structure,
)
from tests.conftest import make_tiny_model

QUICK = PatcherEditor.quick_settings


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_edit_takes_and_the_neurons_stay_quiet_on_held_out_prompts(
    family, tiny_tokenizer, isolated_cache
):
    model = make_tiny_model(family, len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "t-patcher", **QUICK)
    stream.apply(REQUESTS, batch_size=1, progress=False)
    assert all(predicts(model, tiny_tokenizer, r) for r in REQUESTS)
    (adaptor,) = adaptors(model)
    last = model.config.num_hidden_layers - 1 if family == "llama" else model.config.n_layer - 1
    assert stream.records[0].details["patched_module"].endswith(f".{last}.mlp")
    width = 32
    for record in stream.records:
        added = sum(record.details["neurons_added"])
        assert 1 <= added <= 5
        assert record.details["added_parameters"] == added * (2 * width + 1)
        assert record.summary()["added_parameters"] == added * (2 * width + 1)
    assert len(adaptor) == sum(sum(r.details["neurons_added"]) for r in stream.records)
    # each neuron fires on its own edit, and on held-out prompts (not in the memory) it
    # stays below that by most of the memory margin (3)
    fired = (
        torch.stack(
            [
                preactivations(model, tiny_tokenizer, f"{r.prompt} {r.target_new}")
                .max(dim=0)
                .values
                for r in REQUESTS
            ]
        )
        .max(dim=0)
        .values
    )
    held = (
        torch.stack([preactivations(model, tiny_tokenizer, p).max(dim=0).values for p in HELD_OUT])
        .max(dim=0)
        .values
    )
    assert bool((fired > 1.0).all()), fired
    assert bool((held < fired - 2.0).all()), (held, fired)


def test_undo_restores_the_outputs_bit_for_bit(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    prompts = [r.prompt for r in REQUESTS] + HELD_OUT
    before = [all_logits(model, tiny_tokenizer, p) for p in prompts]
    shape = structure(model)
    stream = EditStream.create(model, tiny_tokenizer, "t-patcher", **QUICK)
    stream.apply(REQUESTS[:1], progress=False)
    after_first = [all_logits(model, tiny_tokenizer, p) for p in prompts]
    stream.apply(REQUESTS[1:], progress=False)
    (adaptor,) = adaptors(model)
    first = sum(stream.records[0].details["neurons_added"])
    stream.records[1].undo(model)
    assert len(adaptor) == first
    assert same_outputs(model, tiny_tokenizer, prompts, after_first)
    stream.records[0].undo(model)
    assert structure(model) == shape
    assert same_outputs(model, tiny_tokenizer, prompts, before)


def test_a_layer_outside_the_model_and_bad_settings_are_refused(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "t-patcher", **{**QUICK, "layer": 4})
    with pytest.raises(ValueError, match=r"layer=4 is outside the model.*0\.\.3"):
        stream.apply(REQUESTS[:1], progress=False)
    assert not adaptors(model)
    for bad in ({"margin_inactive": 1.0}, {"max_neurons": 0}, {"lr": 0.0}):
        with pytest.raises(ValueError, match=rf"{next(iter(bad))}=.*out of range"):
            EditStream.create(model, tiny_tokenizer, "t-patcher", **bad)
    with pytest.raises(ValueError, match="memory_source='nowhere.txt' is neither"):
        EditStream.create(model, tiny_tokenizer, "t-patcher", memory_source="nowhere.txt")
