"""FT-L, FT-M and LoRA on tiny random models: the edit takes, undo is exact (weights and
module structure), the same seed gives the same weights, FT-L's norm bound holds, LoRA
layers are peft's and stay in the model with ``merge=false``, and an unknown LoRA target
is refused with the model's own module names."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import LoraLayer

from lm_edit.core.record import temporarily_unedited
from lm_edit.editors.finetune.training import training_rows
from lm_edit.editors.registry import implementation_of
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.test_editor_lifecycle import (
    REQUESTS,
    _first_token,
    _logits,
    _same_state,
    _state,
    _structure,
)

CASES = {
    "ft-l": ("ft-l", {}),
    "ft-m": ("ft-m", {}),
    "lora-merged": ("lora", {"merge": True}),
    "lora-adapter": ("lora", {"merge": False}),
}


def _stream(name: str, model, tokenizer, seed: int = 0, **overrides) -> EditStream:
    settings = {**implementation_of(name).quick_settings, **overrides}
    return EditStream.create(model, tokenizer, name, seed=seed, **settings)


def _lora_layers(model) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]


@pytest.mark.parametrize("case", list(CASES))
def test_edit_takes_undo_is_exact_and_the_seed_decides(case, tiny_tokenizer):
    name, overrides = CASES[case]
    states = []
    for _ in range(2):
        model = make_tiny_model("llama", len(tiny_tokenizer))
        before, structure = _state(model), _structure(model)
        rng = torch.get_rng_state()
        stream = _stream(name, model, tiny_tokenizer, seed=5, **overrides)
        stream.apply(REQUESTS, batch_size=1, progress=False)
        assert torch.equal(torch.get_rng_state(), rng)  # the caller's random state is kept
        for request in REQUESTS:
            answer = int(_logits(model, tiny_tokenizer, request.prompt).argmax())
            assert answer == _first_token(tiny_tokenizer, request.target_new), request.case_id
        states.append(_state(model))
        with temporarily_unedited(model, stream.records):
            assert _same_state(before, model) and _structure(model) == structure
        assert _same_state(states[-1], model)
        stream.undo()
        assert _same_state(before, model) and _structure(model) == structure
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_lora_adapters_stay_as_peft_layers_and_undo_restores_the_original_modules(
    tiny_tokenizer,
):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    originals = {n: m for n, m in model.named_modules() if n.endswith(("q_proj", "v_proj"))}
    stream = _stream(
        "lora",
        model,
        tiny_tokenizer,
        merge=False,
        layers=[1, 2],
        lora_target_modules=["q_proj", "v_proj"],
    )
    first = stream.apply(REQUESTS[:1], progress=False)[0]
    assert sorted(_lora_layers(model)) == sorted(p for p in originals if ".1." in p or ".2." in p)
    assert not first.weights_only and first.added_parameters() > 0
    assert any(".lora_A." in key for key in model.state_dict())
    stream.apply(REQUESTS[1:], progress=False)  # wraps the first batch's LoRA layers
    outer = model.get_submodule("model.layers.1.self_attn.q_proj")
    assert isinstance(outer, LoraLayer) and isinstance(outer.base_layer, LoraLayer)
    stream.undo()
    assert not _lora_layers(model)
    for path, module in originals.items():
        assert model.get_submodule(path) is module


def test_merged_lora_changes_only_the_targeted_weights(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    stream = _stream("lora", model, tiny_tokenizer, layers=[2], lora_target_modules=["v_proj"])
    record = stream.apply(REQUESTS[:1], progress=False)[0]
    assert record.weights_only and not _lora_layers(model)
    after = _state(model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["model.layers.2.self_attn.v_proj.weight"]
    assert list(record.originals) == changed


def test_an_unknown_lora_target_names_the_models_linear_layers(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    stream = _stream("lora", model, tiny_tokenizer, lora_target_modules=["q_proj", "foo"])
    expected = (
        r"lora_target_modules=\['foo'\]: no such module; this model's linear layers are: "
        r"q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head\."
    )
    with pytest.raises(ValueError, match=expected):
        stream.apply(REQUESTS[:1], progress=False)
    assert _same_state(before, model)
    stream = _stream("lora", model, tiny_tokenizer, layers=[7])
    with pytest.raises(ValueError, match=r"layers=\[7\] is outside the model"):
        stream.apply(REQUESTS[:1], progress=False)


def test_ft_l_keeps_every_weight_within_the_norm_constraint(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    bound = 0.01
    stream = _stream("ft-l", model, tiny_tokenizer, norm_constraint=bound, lr=0.05, layers=[1])
    stream.apply(REQUESTS, batch_size=2, progress=False)
    after = _state(model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["model.layers.1.mlp.down_proj.weight"]
    delta = (after[changed[0]] - before[changed[0]]).abs().max().item()
    assert bound * 0.5 < delta <= bound + 1e-6


def test_gpt2_fine_tunes_weight_and_bias_and_lora_wraps_conv1d(tiny_tokenizer):
    lora = {"merge": False, "lora_target_modules": ["c_attn"]}
    for name, overrides in (("ft-m", {"layers": [1]}), ("lora", lora)):
        model = make_tiny_model("gpt2", len(tiny_tokenizer))
        before, structure = _state(model), _structure(model)
        stream = _stream(name, model, tiny_tokenizer, **overrides)
        stream.apply(REQUESTS, batch_size=2, progress=False)
        after = _state(model)
        if name == "ft-m":
            changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
            assert changed == [
                "transformer.h.1.mlp.c_proj.bias",
                "transformer.h.1.mlp.c_proj.weight",
            ]
        else:
            assert _lora_layers(model) == [f"transformer.h.{i}.attn.c_attn" for i in (2, 3)]
        stream.undo()
        assert _same_state(before, model) and _structure(model) == structure


def test_the_two_objectives_score_the_target_where_easyedit_does(tiny_tokenizer):
    request = REQUESTS[0].__class__("m", "Toyota is a car company from", "Toyota", "Paris Rome")
    target = tiny_tokenizer("Toyota is a car company from Paris Rome")["input_ids"]
    start = len(tiny_tokenizer("Toyota is a car company from")["input_ids"])
    count = len(target) - start
    assert count > 1
    (last,) = training_rows(tiny_tokenizer, [request], "prompt_last")
    assert last.ids == target[:start]
    assert last.span == ([start - 1] * count, target[start:])
    (forced,) = training_rows(tiny_tokenizer, [request], "target_new")
    assert forced.ids == target  # the last token too, as EasyEdit feeds it
    assert forced.span == (list(range(start - 1, len(target) - 1)), target[start:])
