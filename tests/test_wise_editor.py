"""WISE: the edit takes through the side memory; routing uses it only where the activation
distance reaches the threshold, and the main memory's outputs are untouched bit for bit;
shards are filed and TIES-merged on schedule; undo of each batch is exact; the same seed
gives the same side memory; bad settings are refused by name."""

from __future__ import annotations

import pytest
import torch

from lm_edit.editors.side_memory import SideMemoryAdaptor, WiseEditor
from lm_edit.editors.side_memory.merging import ties_merge, trim
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.test_grace_editor import (
    REQUESTS,
    UNRELATED,
    _first_token,
    _ids,
    _last_logits,
    _same_state,
    _state,
    _structure,
)

QUICK = WiseEditor.quick_settings


def _adaptor(model) -> SideMemoryAdaptor:
    (adaptor,) = [m for m in model.modules() if isinstance(m, SideMemoryAdaptor)]
    return adaptor


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LM_EDIT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_edit_takes_alone_and_in_cached_generation(family, tiny_tokenizer, private_cache):
    model = make_tiny_model(family, len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "wise", **QUICK)
    stream.apply(REQUESTS, batch_size=1, progress=False)
    adaptor = _adaptor(model)
    assert adaptor.edits == 2 and len(adaptor.side_acts) == 2
    for request in REQUESTS:
        target = _first_token(tiny_tokenizer, request.target_new)
        assert int(_last_logits(model, tiny_tokenizer, request.prompt).argmax()) == target
    ids = _ids(tiny_tokenizer, REQUESTS[0].prompt)
    generated = model.generate(ids, max_new_tokens=2, do_sample=False, use_cache=True)
    assert tiny_tokenizer.decode(generated[0, ids.shape[1] :]).startswith(" Rome")


def test_below_the_threshold_the_main_memory_answers_bit_for_bit(tiny_tokenizer, private_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    prompts = [r.prompt for r in REQUESTS] + UNRELATED
    before = [model(_ids(tiny_tokenizer, p)).logits.detach() for p in prompts]
    EditStream.create(model, tiny_tokenizer, "wise", **QUICK).apply(REQUESTS, progress=False)
    adaptor = _adaptor(model)
    routed = model(_ids(tiny_tokenizer, REQUESTS[0].prompt)).logits.detach()
    assert not torch.equal(routed, before[0])
    adaptor.act_ratio = 1e6  # no distance reaches the threshold: the main memory answers
    for prompt, expected in zip(prompts, before, strict=True):
        assert torch.equal(model(_ids(tiny_tokenizer, prompt)).logits.detach(), expected)


def test_routing_is_causal_so_padding_and_later_tokens_change_nothing(
    tiny_tokenizer, private_cache
):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    EditStream.create(model, tiny_tokenizer, "wise", **QUICK).apply(REQUESTS[:1], progress=False)
    prompt = REQUESTS[0].prompt
    alone = model(_ids(tiny_tokenizer, prompt)).logits[0].detach()
    longer = model(_ids(tiny_tokenizer, prompt + " Rome and more words")).logits[0].detach()
    n = alone.shape[0]
    assert torch.allclose(longer[:n], alone, atol=1e-5)


def test_undo_of_each_batch_is_exact_and_the_first_removes_everything(
    tiny_tokenizer, private_cache
):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    state, shape = _state(model), _structure(model)
    stream = EditStream.create(model, tiny_tokenizer, "wise", **QUICK)
    stream.apply(REQUESTS[:1], progress=False)
    adaptor = _adaptor(model)
    side_first = adaptor.side.detach().clone()
    logits_first = [_last_logits(model, tiny_tokenizer, p) for p in UNRELATED]
    stream.apply(REQUESTS[1:], progress=False)
    assert not torch.equal(adaptor.side, side_first)
    stream.records[1].undo(model)
    assert torch.equal(adaptor.side, side_first) and adaptor.edits == 1
    for prompt, expected in zip(UNRELATED, logits_first, strict=True):
        assert torch.equal(_last_logits(model, tiny_tokenizer, prompt), expected)
    stream.records[0].undo(model)
    assert _same_state(state, model) and _structure(model) == shape


def test_the_same_seed_gives_the_same_side_memory(tiny_tokenizer, private_cache):
    sides = []
    for _ in range(2):
        model = make_tiny_model("llama", len(tiny_tokenizer))
        EditStream.create(model, tiny_tokenizer, "wise", seed=5, **QUICK).apply(
            REQUESTS, progress=False
        )
        sides.append(_adaptor(model).side.detach().clone())
    assert torch.equal(sides[0], sides[1])


def test_the_mask_and_the_norm_constraint_bound_the_change(tiny_tokenizer, private_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    settings = {**QUICK, "mask_ratio": 0.3, "norm_constraint": 0.05}
    EditStream.create(model, tiny_tokenizer, "wise", **settings).apply(REQUESTS[:1], progress=False)
    adaptor = _adaptor(model)
    change = adaptor.side.detach() - adaptor.original
    assert float(change.abs().max()) <= 0.05 + 1e-6
    # weight decay touches every entry slightly; the gradient only the masked ones
    moved = (change.abs() > 1e-3).float()
    assert float((moved * (1 - adaptor.mask)).sum()) == 0.0
    assert float((moved * adaptor.mask).sum()) > 0


def test_shards_are_filed_and_merged_on_schedule(tiny_tokenizer, private_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    settings = {**QUICK, "save_freq": 1, "merge_freq": 2}
    stream = EditStream.create(model, tiny_tokenizer, "wise", **settings)
    stream.apply(REQUESTS[:1], progress=False)
    adaptor = _adaptor(model)
    assert len(adaptor.shards) == 1 and adaptor.side_acts == []
    assert torch.equal(adaptor.side, adaptor.original)
    first = adaptor.shards[0].clone()
    stream.apply(REQUESTS[1:], progress=False)
    assert stream.records[1].details["shards_merged"] and len(adaptor.shards) == 1
    assert not torch.equal(adaptor.shards[0], first)
    stream.records[1].undo(model)
    assert len(adaptor.shards) == 1 and torch.equal(adaptor.shards[0], first)


def test_ties_merge_trims_elects_signs_and_averages_the_agreeing_changes():
    base = torch.zeros(4)
    a = torch.tensor([1.0, -2.0, 0.1, 3.0])
    b = torch.tensor([3.0, 1.0, 0.0, -1.0])
    assert trim(a, 0.5).tolist() == [0.0, -2.0, 0.0, 3.0]
    merged = ties_merge(base, [a, b], [0.5, 0.5], density=1.0)
    # entry 0: both positive -> mean 2; entry 1: sum of weighted -0.5 -> negative wins,
    # only a agrees -> -2; entry 2: only a (0.1); entry 3: sum 1 -> positive, a -> 3
    assert merged.tolist() == pytest.approx([2.0, -2.0, 0.1, 3.0])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"layer": 9}, "outside the model"),
        ({"act_margin": [1.0, 2.0]}, "alpha, beta, gamma"),
        ({"save_freq": 3, "merge_freq": 4}, "multiple of"),
        ({"module": "attention"}, "one of 'mlp_out', 'mlp_in'"),
        ({"mask_ratio": 0.0}, "mask_ratio"),
    ],
)
def test_bad_settings_are_refused_by_name(settings, message, tiny_tokenizer, private_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    state = _state(model)
    with pytest.raises(ValueError, match=message):
        stream = EditStream.create(model, tiny_tokenizer, "wise", **{**QUICK, **settings})
        stream.apply(REQUESTS[:1], progress=False)
    assert _same_state(state, model)


def test_the_target_nll_follows_the_reference_denominator_unless_asked():
    from lm_edit.editors.side_memory.objective import edit_nll

    log_probs = torch.log_softmax(torch.randn(2, 5, 7), dim=-1)
    spans = [([1], [3]), ([2, 3], [4, 5])]
    one = -log_probs[0, 1, 3]
    two = -(log_probs[1, 2, 4] + log_probs[1, 3, 5])
    assert float(edit_nll(log_probs, spans, "reference")) == pytest.approx(
        float((one / 2 + two / 3) / 2)
    )
    assert float(edit_nll(log_probs, spans, "target")) == pytest.approx(float((one + two / 2) / 2))
