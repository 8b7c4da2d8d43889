"""CaliNET: one block of calibration slots per batch beside the last MLP makes the batch's
targets the predictions; held-out prompts move less than the edited ones; undo of each
batch is exact; bad settings are refused by name; the record counts the added numbers."""

from __future__ import annotations

import pytest
import torch

from lm_edit.editors.added_neurons import CaliNetEditor
from lm_edit.stream import EditStream
from tests.added_neuron_checks import (
    HELD_OUT,
    REQUESTS,
    adaptors,
    all_logits,
    predicts,
    same_outputs,
    structure,
)
from tests.conftest import make_tiny_model

QUICK = CaliNetEditor.quick_settings


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_one_batch_takes_and_held_out_prompts_move_less(family, tiny_tokenizer):
    model = make_tiny_model(family, len(tiny_tokenizer))
    before = {p: all_logits(model, tiny_tokenizer, p)[-1] for p in HELD_OUT}
    edited_before = {r.prompt: all_logits(model, tiny_tokenizer, r.prompt)[-1] for r in REQUESTS}
    stream = EditStream.create(model, tiny_tokenizer, "calinet", **QUICK)
    stream.apply(REQUESTS, batch_size=2, progress=False)
    assert all(predicts(model, tiny_tokenizer, r) for r in REQUESTS)
    (record,) = stream.records
    assert record.details["slots_added"] == 16 and record.details["slots_total"] == 16
    assert record.details["added_parameters"] == 16 * (2 * 32 + 1)
    assert record.summary()["added_parameters"] == 16 * (2 * 32 + 1)

    def moved(prompts: dict[str, torch.Tensor]) -> float:
        return max(
            float((all_logits(model, tiny_tokenizer, p)[-1] - old).abs().max())
            for p, old in prompts.items()
        )

    assert moved(before) < moved(edited_before)


def test_undo_of_each_batch_is_exact(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    prompts = [r.prompt for r in REQUESTS] + HELD_OUT
    before = [all_logits(model, tiny_tokenizer, p) for p in prompts]
    shape = structure(model)
    stream = EditStream.create(model, tiny_tokenizer, "calinet", **QUICK, layers=(2, 3))
    stream.apply(REQUESTS[:1], progress=False)
    after_first = [all_logits(model, tiny_tokenizer, p) for p in prompts]
    stream.apply(REQUESTS[1:], progress=False)
    assert [len(a) for a in adaptors(model)] == [32, 32]
    assert stream.records[1].details["added_parameters"] == 2 * 16 * (2 * 32 + 1)
    stream.records[1].undo(model)
    assert [len(a) for a in adaptors(model)] == [16, 16]
    assert same_outputs(model, tiny_tokenizer, prompts, after_first)
    stream.records[0].undo(model)
    assert structure(model) == shape
    assert same_outputs(model, tiny_tokenizer, prompts, before)


def test_a_layer_outside_the_model_and_bad_settings_are_refused(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "calinet", **QUICK, layers=(3, 7))
    with pytest.raises(ValueError, match=r"layer=7 is outside the model.*0\.\.3"):
        stream.apply(REQUESTS[:1], progress=False)
    assert not adaptors(model)
    for bad in ({"slots": 0}, {"lr": 0.0}, {"layers": (-1,)}, {"n_iter": 0}):
        with pytest.raises(ValueError, match=rf"{next(iter(bad))}=.*out of range"):
            EditStream.create(model, tiny_tokenizer, "calinet", **bad)
