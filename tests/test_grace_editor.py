"""GRACE: the edit takes at the prompt's last token, alone or followed by an answer; other
prompts are untouched bit for bit; keys are added, split and expanded by the paper's
rules; undo of each batch is exact; the same seed gives the same codebook."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lm_edit.data.requests import EditRequest
from lm_edit.editors.codebook import CodebookAdaptor
from lm_edit.editors.codebook.rules import SPLIT_MARGIN, place
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model

REQUESTS = [
    EditRequest("a", "The city named after Eiffel Tower", "Eiffel Tower", "Rome", "Paris"),
    EditRequest("b", "The country known for Toyota", "Toyota", "Germany", "Japan"),
]
UNRELATED = [
    "Michael Jordan plays the sport of",
    "Danielle Darrieux is a native speaker of",
    "The Colosseum is located in the city of",
]
QUICK = {"n_iter": 25}


def _ids(tokenizer, text: str) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt")["input_ids"]


def _last_logits(model, tokenizer, text: str) -> torch.Tensor:
    with torch.no_grad():
        return model(_ids(tokenizer, text)).logits[0, -1]


def _first_token(tokenizer, target: str) -> int:
    return tokenizer(" " + target)["input_ids"][0]


def _target_logprob(model, tokenizer, prompt: str, target: str, suffix: str = "") -> float:
    """Summed log-probability of ``target``'s tokens after ``prompt`` in the one sequence
    prompt + target (+ suffix), as lm-eval's log-likelihood requests score it."""
    start = len(tokenizer(prompt)["input_ids"])
    whole = tokenizer(prompt + " " + target)["input_ids"]
    ids = torch.tensor([tokenizer(prompt + " " + target + suffix)["input_ids"]])
    with torch.no_grad():
        logprobs = F.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(float(logprobs[i - 1, whole[i]]) for i in range(start, len(whole)))


def _adaptor(model) -> CodebookAdaptor:
    found = [m for m in model.modules() if isinstance(m, CodebookAdaptor)]
    assert len(found) == 1
    return found[0]


def _codebook(model) -> dict[str, object]:
    adaptor = _adaptor(model)
    return {
        "keys": adaptor.keys.clone(),
        "radii": adaptor.radii.clone(),
        "values": adaptor.values.detach().clone(),
        "labels": list(adaptor.labels),
    }


def _same_codebook(a: dict, b: dict) -> bool:
    tensors = ("keys", "radii", "values")
    return a["labels"] == b["labels"] and all(torch.equal(a[k], b[k]) for k in tensors)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _structure(model) -> list[tuple[str, str, int, int]]:
    return [
        (name, type(m).__name__, len(m._forward_hooks), len(m._forward_pre_hooks))
        for name, m in model.named_modules()
    ]


def _same_state(before: dict[str, torch.Tensor], model) -> bool:
    after = model.state_dict()
    return set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_edit_takes_alone_and_followed_by_the_answer(family, tiny_tokenizer):
    model = make_tiny_model(family, len(tiny_tokenizer))
    before = {
        r.case_id: _target_logprob(model, tiny_tokenizer, r.prompt, r.target_new, " and more")
        for r in REQUESTS
    }
    stream = EditStream.create(model, tiny_tokenizer, "grace", **QUICK)
    stream.apply(REQUESTS, batch_size=1, progress=False)
    for request in REQUESTS:
        answer = int(_last_logits(model, tiny_tokenizer, request.prompt).argmax())
        assert answer == _first_token(tiny_tokenizer, request.target_new), request.case_id
        # lm-eval's log-likelihood case: the prompt followed by the answer (and more text)
        # in one sequence; the key still matches at the prompt's last token.
        after = _target_logprob(model, tiny_tokenizer, request.prompt, request.target_new, "")
        followed = _target_logprob(
            model, tiny_tokenizer, request.prompt, request.target_new, " and more"
        )
        assert after > before[request.case_id] + 1.0
        assert followed == pytest.approx(after, abs=1e-4)
    assert stream.records[0].details["key_actions"] == ["add"]
    assert len(_adaptor(model)) == 2


def test_padded_batches_edit_and_leave_other_rows_alone(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    EditStream.create(model, tiny_tokenizer, "grace", **QUICK).apply(REQUESTS[:1], progress=False)
    prompts = [REQUESTS[0].prompt, UNRELATED[0]]
    rows = [tiny_tokenizer(p)["input_ids"] for p in prompts]
    width = max(len(r) for r in rows)
    target = _first_token(tiny_tokenizer, REQUESTS[0].target_new)
    for side in ("right", "left"):
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            where = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
            ids[i, where], mask[i, where] = torch.tensor(row), 1
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        last = [len(rows[0]) - 1, len(rows[1]) - 1] if side == "right" else [-1, -1]
        assert int(logits[0, last[0]].argmax()) == target, side
        alone = _last_logits(model, tiny_tokenizer, prompts[1])
        assert torch.allclose(logits[1, last[1]], alone, atol=1e-4), side


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_unrelated_prompts_are_unchanged_bit_for_bit(family, tiny_tokenizer):
    model = make_tiny_model(family, len(tiny_tokenizer))
    before = [_last_logits(model, tiny_tokenizer, p) for p in UNRELATED]
    full_before = [model(_ids(tiny_tokenizer, p)).logits.detach() for p in UNRELATED]
    EditStream.create(model, tiny_tokenizer, "grace", **QUICK).apply(REQUESTS, progress=False)
    assert not torch.equal(_last_logits(model, tiny_tokenizer, REQUESTS[0].prompt), before[0])
    for prompt, expected, full in zip(UNRELATED, before, full_before, strict=True):
        assert torch.equal(_last_logits(model, tiny_tokenizer, prompt), expected), prompt
        assert torch.equal(model(_ids(tiny_tokenizer, prompt)).logits.detach(), full), prompt


# -- the rules that place a key ----------------------------------------------------------


def _book(*keys: list[float], labels: list[str], radius: float = 1.0) -> CodebookAdaptor:
    adaptor = CodebookAdaptor(torch.nn.Linear(2, 3), key_width=2, value_width=3)
    for key, label in zip(keys, labels, strict=True):
        query = torch.tensor(key)
        placement = place(adaptor.keys, adaptor.radii, adaptor.labels, query, label, radius)
        adaptor.insert(placement, query, label, torch.zeros(3), radius, "coverage")
    return adaptor


def test_a_key_out_of_reach_is_added():
    adaptor = _book([0.0, 0.0], [3.0, 0.0], labels=["x", "y"])
    assert adaptor.labels == ["x", "y"]
    assert adaptor.radii.tolist() == [1.0, 1.0]


def test_a_conflicting_label_within_reach_splits_both_radii():
    adaptor = _book([0.0, 0.0], [1.5, 0.0], labels=["x", "y"])
    assert adaptor.labels == ["x", "y"]
    assert adaptor.radii[0].item() == pytest.approx(0.75 - SPLIT_MARGIN)
    assert adaptor.radii[1].item() == pytest.approx(0.75)
    # each key now answers for its own side only
    adaptor.values.data = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    out = adaptor(torch.tensor([[0.7, 0.0], [0.8, 0.0], [5.0, 0.0]]))
    assert out[0].tolist() == [1.0, 1.0, 1.0] and out[1].tolist() == [2.0, 2.0, 2.0]
    assert torch.equal(out[2], adaptor.layer(torch.tensor([5.0, 0.0])))


def test_the_same_label_within_reach_expands_the_nearest_radius():
    adaptor = _book([0.0, 0.0], [1.5, 0.0], labels=["x", "x"])
    assert adaptor.labels == ["x"] and len(adaptor) == 1
    assert adaptor.radii.tolist() == [1.5]
    inside = _book([0.0, 0.0], [0.5, 0.0], labels=["x", "x"])
    assert inside.radii.tolist() == [1.0]  # already covered: nothing grows


def test_the_same_input_with_a_new_answer_relabels_its_key():
    adaptor = _book([0.0, 0.0], [0.0, 0.0], labels=["x", "y"])
    assert adaptor.labels == ["y"] and adaptor.radii.tolist() == [1.0]


def test_the_editor_splits_conflicting_edits_and_both_still_take(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "grace", eps=100.0, **QUICK)
    stream.apply(REQUESTS, batch_size=2, progress=False)
    assert stream.records[0].details["key_actions"] == ["add", "split"]
    distance = torch.dist(_adaptor(model).keys[0], _adaptor(model).keys[1]).item()
    assert _adaptor(model).radii[1].item() == pytest.approx(distance / 2)
    for request in REQUESTS:
        answer = int(_last_logits(model, tiny_tokenizer, request.prompt).argmax())
        assert answer == _first_token(tiny_tokenizer, request.target_new), request.case_id


def test_editing_the_same_fact_again_reuses_its_key(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "grace", **QUICK)
    stream.apply([REQUESTS[0], REQUESTS[0]], batch_size=1, progress=False)
    assert [r.details["key_actions"] for r in stream.records] == [["add"], ["expand"]]
    assert len(_adaptor(model)) == 1


# -- undo and determinism -----------------------------------------------------------------


def test_undo_of_each_batch_is_exact(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    state, structure = _state(model), _structure(model)
    original = model.get_submodule("model.layers.3.mlp.down_proj")
    logits = [_last_logits(model, tiny_tokenizer, r.prompt) for r in REQUESTS]
    stream = EditStream.create(model, tiny_tokenizer, "grace", **QUICK)
    first = stream.apply(REQUESTS[:1], progress=False)[0]
    after_first, codebook_first = _state(model), _codebook(model)
    logits_first = [_last_logits(model, tiny_tokenizer, r.prompt) for r in REQUESTS]
    adaptor = _adaptor(model)
    second = stream.apply(REQUESTS[1:], progress=False)[0]
    assert _adaptor(model) is adaptor and len(adaptor) == 2  # the second batch reuses it
    assert second.modules == {} and "model.layers.3.mlp.down_proj" in first.modules

    stream.editor.undo(model, second)
    assert _same_codebook(_codebook(model), codebook_first)
    assert _same_state(after_first, model)
    for request, expected in zip(REQUESTS, logits_first, strict=True):
        assert torch.equal(_last_logits(model, tiny_tokenizer, request.prompt), expected)

    stream.editor.undo(model, first)
    assert model.get_submodule("model.layers.3.mlp.down_proj") is original
    assert _same_state(state, model) and _structure(model) == structure
    for request, expected in zip(REQUESTS, logits, strict=True):
        assert torch.equal(_last_logits(model, tiny_tokenizer, request.prompt), expected)


def test_same_seed_gives_the_same_codebook(tiny_tokenizer):
    books = []
    for seed in (3, 3, 4):
        model = make_tiny_model("llama", len(tiny_tokenizer))
        stream = EditStream.create(model, tiny_tokenizer, "grace", seed=seed, **QUICK)
        stream.apply(REQUESTS, progress=False)
        books.append(_codebook(model))
    assert _same_codebook(books[0], books[1])
    assert not _same_codebook(books[0], books[2])  # cold values start from the seed


@pytest.mark.parametrize(
    ("setting", "pattern"),
    [
        ({"eps": 0.0}, r"eps=0.0 is out of range"),
        ({"n_iter": 0}, r"n_iter=0 is out of range"),
        ({"edit_lr": -1.0}, r"edit_lr=-1.0 is out of range"),
        ({"layer_fraction": 1.5}, r"layer_fraction=1.5 is out of range"),
        ({"module": "attn_out"}, r"module must be one of"),
        ({"val_init": "hot"}, r"val_init must be one of"),
        ({"eps_expand": "decay"}, r"eps_expand must be one of"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(setting, pattern, tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(ValueError, match=pattern):
        EditStream.create(model, tiny_tokenizer, "grace", **setting)


def test_a_layer_outside_the_model_is_refused_before_anything_changes(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    structure = _structure(model)
    stream = EditStream.create(model, tiny_tokenizer, "grace", layer=9, **QUICK)
    with pytest.raises(ValueError, match=r"layer=9 is outside the model"):
        stream.apply(REQUESTS[:1], progress=False)
    assert _structure(model) == structure


def test_gpt2_xl_family_wraps_the_mlp_input_as_easyedit_does(tiny_tokenizer):
    model = make_tiny_model("gpt2", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "grace", module="mlp_in", layer=2, **QUICK)
    record = stream.apply(REQUESTS[:1], progress=False)[0]
    assert list(record.modules) == ["transformer.h.2.mlp.c_fc"]
    answer = int(_last_logits(model, tiny_tokenizer, REQUESTS[0].prompt).argmax())
    assert answer == _first_token(tiny_tokenizer, REQUESTS[0].target_new)


def test_warm_values_start_at_the_modules_own_output(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _last_logits(model, tiny_tokenizer, REQUESTS[0].prompt)
    stream = EditStream.create(
        model, tiny_tokenizer, "grace", val_init="warm", n_iter=1, edit_lr=1e-9
    )
    stream.apply(REQUESTS[:1], progress=False)
    assert len(_adaptor(model)) == 1
    after = _last_logits(model, tiny_tokenizer, REQUESTS[0].prompt)
    assert torch.allclose(after, before, atol=1e-4)


def test_eps_and_layer_are_model_arguments():
    from lm_edit.editors.codebook import GraceConfig
    from lm_edit.editors.config import build_config
    from lm_edit.evaluation.model import split_model_args

    args = {"pretrained": "x", "editor": "grace", "eps": "3.0", "layer": "2"}
    _, hyper, _, hflm = split_model_args(args)
    assert hyper == {"eps": "3.0", "layer": "2"} and hflm == {"pretrained": "x"}
    config = build_config(GraceConfig, hyper, "grace")
    assert config.eps == 3.0 and config.layer == 2
