"""ROME through the public API on tiny random models: what changes, undo, determinism,
statistics caching and input errors."""

from __future__ import annotations

import pytest
import torch

import lm_edit
from lm_edit.data.requests import EditRequest, EditRequestError
from lm_edit.editors import UnknownEditorError, known_editors
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model

FAST = {
    "v_num_grad_steps": 6,
    "stats_model_samples": 8,
    "stats_max_length": 24,
    "template_spec": [[3, 2]],
    "layers": [1],
}
REQUESTS = [
    EditRequest(
        "a", "The Eiffel Tower is located in the city of", "The Eiffel Tower", "Rome", "Paris"
    ),
    EditRequest("b", "Toyota is a car company from", "Toyota", "Germany", "Japan"),
]


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_rome_changes_only_the_edited_projection_and_undo_is_exact(
    family, tiny_tokenizer, isolated_cache
):
    model = make_tiny_model(family, len(tiny_tokenizer))
    before = _state(model)
    record = lm_edit.edit(model, tiny_tokenizer, REQUESTS, "rome", **FAST)
    after = _state(model)
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    expected = (
        "model.layers.1.mlp.down_proj.weight"
        if family == "llama"
        else "transformer.h.1.mlp.c_proj.weight"
    )
    assert changed == [expected]
    assert record.case_ids == ["a", "b"]
    record.undo(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_rome_edit_raises_the_new_target_probability(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    request = REQUESTS[0]

    def log_prob() -> float:
        ids = tiny_tokenizer(request.prompt + " Rome")["input_ids"]
        start = len(tiny_tokenizer(request.prompt)["input_ids"])
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits.log_softmax(-1)
        return sum(logits[0, i - 1, ids[i]].item() for i in range(start, len(ids)))

    base = log_prob()
    loose = {
        **FAST,
        "layers": [1],
        "v_num_grad_steps": 30,
        "v_lr": 1.0,
        "clamp_norm_factor": 100.0,
        "consistent_keys": False,
    }
    lm_edit.edit(model, tiny_tokenizer, request, "rome", **loose)
    assert log_prob() > base + 1.0


def test_same_seed_gives_identical_weights(tiny_tokenizer, isolated_cache):
    results = []
    for _ in range(2):
        model = make_tiny_model("llama", len(tiny_tokenizer))
        lm_edit.edit(model, tiny_tokenizer, REQUESTS, "rome", seed=7, **FAST)
        results.append(_state(model))
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_stream_undo_restores_the_start(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    stream = EditStream.create(model, tiny_tokenizer, "rome", **FAST)
    stream.apply(REQUESTS, batch_size=1, progress=False)
    assert len(stream.records) == 2 and stream.edited_case_ids == ["a", "b"]
    stream.undo()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_statistics_are_cached_and_reused(tiny_tokenizer, isolated_cache, monkeypatch):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    record = lm_edit.edit(model, tiny_tokenizer, REQUESTS[:1], "rome", **FAST)
    record.undo(model)
    files = sorted(p.name for p in isolated_cache.glob("stats/*/*.pt"))
    assert files == [
        "layer1-model-n8-len24-seed0.inverse-ridge0.0001.pt",
        "layer1-model-n8-len24-seed0.pt",
    ]
    assert len(list(isolated_cache.glob("stats/*/texts-model-n8-*.json"))) == 1
    assert not list(isolated_cache.glob("stats/*/.*"))

    import lm_edit.core.stats as stats

    def fail(*args, **kwargs):
        raise AssertionError("statistics were recomputed")

    monkeypatch.setattr(stats, "collect", fail)
    lm_edit.edit(model, tiny_tokenizer, REQUESTS[:1], "rome", **FAST)


def test_batched_equality_edit_applies_both_facts(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    record = lm_edit.edit(model, tiny_tokenizer, REQUESTS, "rome", batch_size=2, **FAST)
    assert len(record.details["steps"]) == 1


def test_unknown_editor_lists_the_known_ones(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(UnknownEditorError, match="Known editors: .*rome"):
        lm_edit.edit(model, tiny_tokenizer, REQUESTS, "romeo")
    assert {"rome", "none"} <= set(known_editors())


def test_unknown_hyperparameter_is_named(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(ValueError, match="Unknown hyperparameter.*lyers.*Valid:"):
        lm_edit.edit(model, tiny_tokenizer, REQUESTS, "rome", lyers=[1])


def test_layer_outside_the_model(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(
        ValueError, match=r"layers=\[9\] is outside the model, which has layers 0..3"
    ):
        lm_edit.edit(model, tiny_tokenizer, REQUESTS, "rome", **{**FAST, "layers": [9]})


def test_subject_not_in_prompt_names_the_case():
    with pytest.raises(EditRequestError, match="case 'x'.*does not occur"):
        EditRequest("x", "The tower is in", "Eiffel Tower", "Rome")


def test_none_editor_changes_nothing(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    record = lm_edit.edit(model, tiny_tokenizer, REQUESTS, "none")
    assert record.case_ids == ["a", "b"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
