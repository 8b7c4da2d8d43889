"""Efficacy of every locate-then-edit editor on a tiny model, in one batch of facts with
different subjects: the requested objects become the model's next-token argmax. For
ROME (prefix-averaged direction keys, bare-prompt constraint keys) this is the batched
equality solve with different keys, whose constraint tests/test_equality_batched.py checks
exactly (the argmax alone would not reveal a transposed solve on a model this small); for
PMET the joint attention value is optimised."""

from __future__ import annotations

import pytest
import torch

from lm_edit.editors.locate import values
from lm_edit.editors.registry import implementation_of
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.test_editor_lifecycle import REQUESTS, _first_token, _logits

LOCATE_EDITORS = ["rome", "r-rome", "memit", "emmet", "alphaedit", "pmet"]


def _edit_in_one_batch(name: str, model, tokenizer) -> EditStream:
    settings = implementation_of(name).quick_settings
    stream = EditStream.create(model, tokenizer, name, seed=0, **settings)
    stream.apply(REQUESTS, batch_size=len(REQUESTS), progress=False)
    return stream


@pytest.mark.parametrize("name", LOCATE_EDITORS)
def test_a_batch_of_facts_becomes_the_argmax(name, tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = [int(_logits(model, tiny_tokenizer, r.prompt).argmax()) for r in REQUESTS]
    targets = [_first_token(tiny_tokenizer, r.target_new) for r in REQUESTS]
    assert before != targets
    _edit_in_one_batch(name, model, tiny_tokenizer)
    after = [int(_logits(model, tiny_tokenizer, r.prompt).argmax()) for r in REQUESTS]
    assert after == targets


def test_pmet_optimises_the_attention_output_beside_the_mlp(
    tiny_tokenizer, isolated_cache, monkeypatch
):
    hooked: list[str] = []
    model = make_tiny_model("llama", len(tiny_tokenizer))
    names = {module: name for name, module in model.named_modules()}
    edit_output = values.edit_output

    def spy(module, fn):
        hooked.append(names[module])
        return edit_output(module, fn)

    monkeypatch.setattr(values, "edit_output", spy)
    stream = _edit_in_one_batch("pmet", model, tiny_tokenizer)
    last = max(stream.records[-1].details["update_norm"])
    assert f"model.layers.{last}.self_attn.o_proj" in hooked
    assert f"model.layers.{last}.mlp.down_proj" in hooked
    assert torch.isfinite(model.model.layers[last].mlp.down_proj.weight).all()
