"""KN on tiny random models: integrated gradients are complete (the attributions of a
layer add up to the change in probability), the edit takes and touches only the located
neurons' value vectors, undo is exact, the seed decides nothing random, refinement keeps
neurons shared across prompts, and bad settings or an unreadable MLP are refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lm_edit.core.anatomy import UnsupportedArchitectureError, resolve_anatomy
from lm_edit.core.hooks import replace_last_input
from lm_edit.editors.neurons.attribution import (
    AttributionSettings,
    Query,
    answer_queries,
    coarse_neurons,
    last_activations,
    layer_attribution,
    prefix_cache,
    refined_neurons,
)
from lm_edit.editors.registry import implementation_of
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.test_anatomy import FAMILIES, build
from tests.test_editor_lifecycle import REQUESTS, _first_token, _logits, _same_state, _state


def _stream(model, tokenizer, seed: int = 0, **overrides) -> EditStream:
    settings = {**implementation_of("kn").quick_settings, **overrides}
    return EditStream.create(model, tokenizer, "kn", seed=seed, **settings)


def _probability(model, ids: list[int], token: int) -> float:
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids])).logits[0, -1].softmax(-1)[token])


def test_integrated_gradients_add_up_to_the_change_in_probability(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    anatomy = resolve_anatomy(model)
    query = answer_queries(tiny_tokenizer, REQUESTS[0].prompt, "Paris")[0]
    layer = 2
    activation = last_activations(model, anatomy, query.ids, [layer])[layer]
    settings = AttributionSettings((layer,), 400, 100, 0.2, 0.4)
    module = anatomy.mlp_out_module(model, layer)
    scores = layer_attribution(model, module, query, activation, settings)
    full = _probability(model, query.ids, query.token)
    with replace_last_input(module, torch.zeros(1, activation.numel())):
        zero = _probability(model, query.ids, query.token)
    assert float(scores.sum()) == pytest.approx(full - zero, rel=0.02, abs=1e-5)
    assert float(scores.abs().max()) > 0


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "opt"])  # OPT: refused below
def test_cached_prefix_gives_the_whole_prompt_attribution(family):
    """Every point scales only the last position, so running the last token against the
    prompt's key-value cache must give what running every point over the whole prompt
    gives, on every supported architecture."""
    model = build(family)
    anatomy = resolve_anatomy(model)
    query = Query([5, 17, 42, 8, 63, 29], 11)
    settings = AttributionSettings((1,), 6, 4, 0.2, 0.4)  # two batches, one of them short
    activation = last_activations(model, anatomy, query.ids, [1])[1]
    module = anatomy.mlp_out_module(model, 1)
    prefix = prefix_cache(model, query.ids)
    assert prefix is not None
    cached = layer_attribution(model, module, query, activation, settings, prefix)
    whole = layer_attribution(model, module, query, activation, settings)
    assert float(whole.abs().max()) > 0
    torch.testing.assert_close(cached, whole, rtol=1e-4, atol=1e-9)
    # the prefix is copied, not extended, by each batch of points
    assert prefix.get_seq_length() == len(query.ids) - 1
    assert prefix_cache(model, query.ids[:1]) is None


def test_coarse_and_refined_neurons():
    scores = torch.tensor([[0.0, 1.0, 0.3], [0.1, -2.0, 0.25]])
    assert coarse_neurons(scores, [4, 7], 0.2) == [(4, 1), (4, 2), (7, 2)]
    assert coarse_neurons(-scores.abs(), [4, 7], 0.2) == []
    found = [[(1, 2), (3, 4)], [(1, 2)], [(1, 2), (5, 6)]]
    assert refined_neurons(found, 0.4) == [(1, 2)]
    assert refined_neurons(found, 0.0) == [(1, 2), (3, 4), (5, 6)]


@pytest.mark.parametrize("value_sign", ["fixed", "activation"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("request_index", [0, 1])
def test_edit_takes_on_located_value_vectors_only_and_undo_is_exact(
    family, request_index, value_sign, tiny_tokenizer
):
    request = REQUESTS[request_index]
    states = []
    for _ in range(2):
        model = make_tiny_model(family, len(tiny_tokenizer))
        before = _state(model)
        assert int(_logits(model, tiny_tokenizer, request.prompt).argmax()) != _first_token(
            tiny_tokenizer, request.target_new
        )
        stream = _stream(model, tiny_tokenizer, seed=1, value_sign=value_sign)
        record = stream.apply([request], progress=False)[0]
        answer = int(_logits(model, tiny_tokenizer, request.prompt).argmax())
        assert answer == _first_token(tiny_tokenizer, request.target_new)
        anatomy = stream.anatomy
        after = _state(model)
        changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
        layers = record.details["layers_touched"]
        assert changed == sorted(f"{anatomy.mlp_out_name(layer)}.weight" for layer in layers)
        rows = 0
        for name in changed:
            delta = after[name] - before[name]
            delta = delta if anatomy.transposed else delta.T  # one row per neuron
            rows += int((delta.abs().sum(dim=1) > 0).sum())
        assert rows == record.details["neurons"][request.case_id] > 0
        states.append(after)
        stream.undo()
        assert _same_state(before, model)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize("refine", [False, True])
def test_refine_locates_on_the_rephrases_too(refine, tiny_tokenizer, monkeypatch):
    from lm_edit.data.requests import EditRequest
    from lm_edit.editors.neurons import editor

    request = EditRequest(
        "r",
        "The city named after Eiffel Tower",
        "Eiffel Tower",
        "Rome",
        "Paris",
        rephrases=("Where is the Eiffel Tower", "The Eiffel Tower is in"),
    )
    seen = []
    original = editor.locate

    def spy(model, tokenizer, anatomy, prompts, answer, settings):
        seen.append((prompts, answer, settings.p))
        return original(model, tokenizer, anatomy, prompts, answer, settings)

    monkeypatch.setattr(editor, "locate", spy)
    model = make_tiny_model("llama", len(tiny_tokenizer))
    _stream(model, tiny_tokenizer, refine=refine, p=0.5).apply([request], progress=False)
    prompts = [request.prompt, *request.rephrases] if refine else [request.prompt]
    assert seen == [(prompts, "Paris", 0.5)]


def test_without_an_old_answer_the_models_own_next_token_is_located_and_erased(
    tiny_tokenizer, monkeypatch
):
    """The fallback attributes and erases the exact token the model predicts, even one that
    does not start a word (its text, tokenised again after a space, is another fact)."""
    from lm_edit.data.requests import EditRequest
    from lm_edit.editors.neurons import editor

    model = make_tiny_model("llama", len(tiny_tokenizer))
    prompt = "The city named after Eiffel"
    predicted = int(_logits(model, tiny_tokenizer, prompt).argmax())
    retokenised = answer_queries(tiny_tokenizer, prompt, tiny_tokenizer.decode([predicted]))
    assert [q.token for q in retokenised] != [predicted]  # a word piece: text is not enough
    seen = []
    original = editor.locate

    def spy(model, tokenizer, anatomy, prompts, answer, settings):
        seen.append([q.token for q in answer_queries(tokenizer, prompts[0], answer)])
        return original(model, tokenizer, anatomy, prompts, answer, settings)

    monkeypatch.setattr(editor, "locate", spy)
    request = EditRequest("g", prompt, "Eiffel", "Rome")
    _stream(model, tiny_tokenizer).apply([request], progress=False)
    assert seen == [[predicted]]


@pytest.mark.parametrize("value_sign", ["fixed", "activation"])
def test_value_sign_writes_each_change_with_the_activation_sign(
    value_sign, tiny_tokenizer, monkeypatch
):
    """Two neurons of one layer, one firing negatively at the prompt: ``fixed`` adds the
    same change to both value vectors, ``activation`` subtracts it from the negative one."""
    from lm_edit.editors.neurons import editor

    request = REQUESTS[0]
    model = make_tiny_model("llama", len(tiny_tokenizer))
    anatomy = resolve_anatomy(model)
    ids = tiny_tokenizer(request.prompt)["input_ids"]
    activation = last_activations(model, anatomy, ids, [1])[1]
    negative, positive = int(activation.argmin()), int(activation.argmax())
    assert activation[negative] < 0 < activation[positive]
    located = [(1, negative), (1, positive)]
    monkeypatch.setattr(editor, "locate", lambda *args: located)
    before = model.model.layers[1].mlp.down_proj.weight.detach().clone()
    _stream(model, tiny_tokenizer, value_sign=value_sign).apply([request], progress=False)
    delta = model.model.layers[1].mlp.down_proj.weight.detach() - before
    changed = sorted(int(u) for u in torch.nonzero(delta.abs().sum(dim=0)).flatten())
    assert changed == sorted([negative, positive])
    expected_sign = -1.0 if value_sign == "activation" else 1.0
    torch.testing.assert_close(delta[:, negative], expected_sign * delta[:, positive])


def test_unreadable_mlp_activation_is_refused(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    for layer in model.model.layers:
        mlp = layer.mlp

        def forward(x, mlp=mlp):  # the output projection applied without calling the module
            hidden = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
            return F.linear(hidden, mlp.down_proj.weight)

        mlp.forward = forward
    before = _state(model)
    stream = _stream(model, tiny_tokenizer)
    with pytest.raises(UnsupportedArchitectureError, match=r"mlp\.down_proj was never called"):
        stream.apply(REQUESTS[:1], progress=False)
    assert _same_state(before, model)


@pytest.mark.parametrize(
    "bad",
    [
        {"p": 1.0},
        {"steps": 0},
        {"adaptive_threshold": 0},
        {"embedding": "both"},
        {"layers": [9]},
        {"value_sign": "abs"},
    ],
)
def test_bad_settings_are_refused(bad, tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(ValueError, match=next(iter(bad))):
        _stream(model, tiny_tokenizer, **bad).apply(REQUESTS[:1], progress=False)
