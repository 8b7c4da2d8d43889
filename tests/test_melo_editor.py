"""MELO: the edit takes through peft LoRA blocks chosen by the vector database, alone,
followed by the answer and in cached generation; positions routed to no block are the
unedited model's bit for bit; the database follows MELO's rules; undo of each batch is
exact; the same seed gives the same blocks; bad settings are refused by name."""

from __future__ import annotations

import pytest
import torch

from lm_edit.editors.routed_lora import MeloEditor, VectorDatabase
from lm_edit.editors.routed_lora.database import NO_BLOCK
from lm_edit.editors.routed_lora.editor import ADAPTER
from lm_edit.editors.routed_lora.routing import Routing
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
    _target_logprob,
)

QUICK = MeloEditor.quick_settings


def _lora_layers(model) -> list[torch.nn.Module]:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_edit_takes_alone_followed_by_the_answer_and_in_generation(family, tiny_tokenizer):
    model = make_tiny_model(family, len(tiny_tokenizer))
    before = {
        r.case_id: _target_logprob(model, tiny_tokenizer, r.prompt, r.target_new) for r in REQUESTS
    }
    stream = EditStream.create(model, tiny_tokenizer, "melo", **QUICK)
    stream.apply(REQUESTS, batch_size=1, progress=False)
    assert [r.details["melo_block"] for r in stream.records] == [0, 1]
    assert len(_lora_layers(model)) == 2  # peft's LoRA layers, on the two blocks above
    for request in REQUESTS:
        target = _first_token(tiny_tokenizer, request.target_new)
        assert int(_last_logits(model, tiny_tokenizer, request.prompt).argmax()) == target
        after = _target_logprob(model, tiny_tokenizer, request.prompt, request.target_new)
        assert after > before[request.case_id] + 1.0
        ids = _ids(tiny_tokenizer, request.prompt)
        generated = model.generate(ids, max_new_tokens=3, do_sample=False, use_cache=True)
        text = tiny_tokenizer.decode(generated[0, ids.shape[1] :])
        assert text.startswith(" " + request.target_new), text


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_unrouted_prompts_are_unchanged_bit_for_bit(family, tiny_tokenizer):
    model = make_tiny_model(family, len(tiny_tokenizer))
    full_before = [model(_ids(tiny_tokenizer, p)).logits.detach() for p in UNRELATED]
    EditStream.create(model, tiny_tokenizer, "melo", **QUICK).apply(REQUESTS, progress=False)
    for prompt, full in zip(UNRELATED, full_before, strict=True):
        assert torch.equal(model(_ids(tiny_tokenizer, prompt)).logits.detach(), full), prompt


def test_a_padded_batch_routes_each_row_on_its_own(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    EditStream.create(model, tiny_tokenizer, "melo", **QUICK).apply(REQUESTS[:1], progress=False)
    prompts = [REQUESTS[0].prompt, UNRELATED[0]]
    rows = [tiny_tokenizer(p)["input_ids"] for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.zeros(2, width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    target = _first_token(tiny_tokenizer, REQUESTS[0].target_new)
    assert int(logits[0, len(rows[0]) - 1].argmax()) == target
    alone = _last_logits(model, tiny_tokenizer, prompts[1])
    assert torch.allclose(logits[1, len(rows[1]) - 1], alone, atol=1e-4)


def test_undo_of_each_batch_is_exact_and_the_last_removes_everything(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    state, shape = _state(model), _structure(model)
    stream = EditStream.create(model, tiny_tokenizer, "melo", **QUICK)
    stream.apply(REQUESTS[:1], progress=False)
    after_first = {k: v.detach().clone() for k, v in model.state_dict().items()}
    logits_first = [_last_logits(model, tiny_tokenizer, r.prompt) for r in REQUESTS]
    router = stream.records[0]
    stream.apply(REQUESTS[1:], progress=False)
    stream.records[1].undo(model)
    assert all(torch.equal(after_first[k], v) for k, v in model.state_dict().items())
    for request, expected in zip(REQUESTS, logits_first, strict=True):
        assert torch.equal(_last_logits(model, tiny_tokenizer, request.prompt), expected)
    router.undo(model)
    assert _same_state(state, model) and _structure(model) == shape


def test_the_same_seed_gives_the_same_blocks(tiny_tokenizer):
    states = []
    for _ in range(2):
        model = make_tiny_model("llama", len(tiny_tokenizer))
        EditStream.create(model, tiny_tokenizer, "melo", seed=3, **QUICK).apply(
            REQUESTS, progress=False
        )
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_only_the_batch_block_is_trained(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "melo", **QUICK)
    stream.apply(REQUESTS[:1], progress=False)
    lora = _lora_layers(model)[0]
    b_first = lora.lora_B[ADAPTER].weight.detach().clone()
    stream.apply(REQUESTS[1:], progress=False)
    b_second = lora.lora_B[ADAPTER].weight.detach()
    per = QUICK.get("rank_per_block", 2)
    assert torch.equal(b_first[:, :per], b_second[:, :per])  # block 0 untouched
    assert not torch.equal(b_first[:, per : 2 * per], b_second[:, per : 2 * per])
    assert torch.count_nonzero(b_second[:, 2 * per :]) == 0  # unused blocks stay at zero


# -- the vector database -------------------------------------------------------------------


def _database(*keys: list[float], labels: list[str], radius: float = 1.0) -> VectorDatabase:
    database = VectorDatabase(radius)
    for block, (key, label) in enumerate(zip(keys, labels, strict=True)):
        database.insert(torch.tensor(key), label, block)
    return database


def test_a_key_out_of_reach_starts_a_cluster():
    database = _database([0.0, 0.0], [3.0, 0.0], labels=["x", "y"])
    assert len(database) == 2
    routed = database.route(torch.tensor([[0.1, 0.0], [2.9, 0.0], [1.5, 0.0]]))
    assert routed.tolist() == [0, 1, NO_BLOCK]


def test_the_same_label_joins_the_cluster_and_moves_its_centre():
    database = _database([0.0, 0.0], [1.5, 0.0], labels=["x", "x"])
    assert len(database) == 1
    cluster = database.clusters[0]
    assert cluster.centre.tolist() == [0.75, 0.0] and cluster.radius == 1.0
    assert database.route(torch.tensor([[0.0, 0.0], [1.5, 0.0]])).tolist() == [0, 1]


def test_a_conflicting_label_splits_the_radii_and_forgets_points_outside():
    database = _database([0.0, 0.0], [1.0, 0.0], labels=["x", "y"], radius=2.0)
    old, new = database.clusters
    assert old.radius == pytest.approx(0.5 - 1e-5) and new.radius == pytest.approx(0.5 + 1e-5)
    assert database.splits == 1 and database.forgotten == 0
    assert database.route(torch.tensor([[0.2, 0.0], [0.8, 0.0]])).tolist() == [0, 1]
    # a cluster of two points (centre 0.5) split by a key at 1.2: both points now lie
    # outside its radius (0.35), so it keeps only its centre, routed to no block
    database = _database([0.0, 0.0], [1.0, 0.0], [1.2, 0.0], labels=["x", "x", "y"], radius=2.0)
    old = database.clusters[0]
    assert database.forgotten == 2 and old.blocks == [NO_BLOCK]
    assert database.route(torch.tensor([[0.5, 0.0], [1.2, 0.0]])).tolist() == [NO_BLOCK, 2]


def test_routing_follows_the_latest_match_and_carries_over_a_cache():
    routing = Routing(num_block=4, rank_per_block=1)
    found = torch.tensor([[NO_BLOCK, 2, NO_BLOCK, 1, NO_BLOCK], [NO_BLOCK] * 5])
    routing.blocks = routing.follow(found)
    assert routing.blocks.tolist() == [[NO_BLOCK, 2, 2, 1, 1], [NO_BLOCK] * 5]
    routing.continuing = True
    assert routing.follow(torch.tensor([[NO_BLOCK], [3]])).tolist() == [[1], [3]]
    routing.continuing = False
    assert routing.follow(torch.tensor([[NO_BLOCK], [NO_BLOCK]])).tolist() == [[-1], [-1]]


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"layer": 9}, "outside the model"),
        ({"layer": 2, "lora_layers": [1, 3]}, "must all be above the router"),
        ({"lora_layers": [7]}, "outside the model"),
    ],
)
def test_bad_layers_are_refused_by_name(settings, message, tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    state = _state(model)
    stream = EditStream.create(model, tiny_tokenizer, "melo", **{**QUICK, **settings})
    with pytest.raises(ValueError, match=message):
        stream.apply(REQUESTS[:1], progress=False)
    assert _same_state(state, model)


def test_running_out_of_blocks_names_num_block(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "melo", **{**QUICK, "num_block": 1})
    stream.apply(REQUESTS[:1], progress=False)
    with pytest.raises(ValueError, match="num_block=1"):
        stream.apply(REQUESTS[1:], progress=False)
    target = _first_token(tiny_tokenizer, REQUESTS[0].target_new)
    assert int(_last_logits(model, tiny_tokenizer, REQUESTS[0].prompt).argmax()) == target


def test_a_radius_out_of_range_is_refused(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(ValueError, match="init_radius"):
        EditStream.create(model, tiny_tokenizer, "melo", init_radius=0.0)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_generate_is_seen_to_continue_its_cache(family, tiny_tokenizer):
    """``watch_cache`` reads the cache under the name ``generate`` passes it (``cache``
    in recent transformers, ``past_key_values`` before): the prefill is a fresh pass,
    every later step continues."""
    from lm_edit.core.hooks import watch_cache

    model = make_tiny_model(family, len(tiny_tokenizer))
    seen: list[bool] = []
    model.register_forward_pre_hook(watch_cache(seen.append), with_kwargs=True)
    ids = _ids(tiny_tokenizer, REQUESTS[0].prompt)
    model.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False, use_cache=True)
    assert seen == [False, True, True]
    seen.clear()
    model.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False, use_cache=False)
    assert seen == [False, False, False]


@pytest.mark.parametrize("editor", ["melo", "wise"])
def test_cached_generation_equals_generation_without_a_cache(editor, tiny_tokenizer):
    """Routing carried over the key-value cache gives the tokens a full recomputation
    gives, over several generated tokens after each edited prompt."""
    from lm_edit.editors.registry import implementation_of

    model = make_tiny_model("llama", len(tiny_tokenizer))
    settings = implementation_of(editor).quick_settings
    EditStream.create(model, tiny_tokenizer, editor, **settings).apply(REQUESTS, progress=False)
    for prompt in [r.prompt for r in REQUESTS] + UNRELATED:
        ids = _ids(tiny_tokenizer, prompt)
        options = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}
        cached = model.generate(ids, use_cache=True, **options)
        recomputed = model.generate(ids, use_cache=False, **options)
        assert torch.equal(cached, recomputed), prompt
