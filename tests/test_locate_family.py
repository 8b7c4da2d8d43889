"""The locate-then-edit family as configurations of one editor: every YAML runs, solvers
and layer distributions combine freely, EMMET with one fact is ROME, AlphaEdit's state
belongs to its stream, and cached values and matrices are reused."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

import lm_edit
from lm_edit.data.requests import EditRequest
from lm_edit.editors import resolve_editor
from lm_edit.editors.locate.editor import LocateEditor
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model

FAST = {
    "v_num_grad_steps": 5,
    "stats_model_samples": 8,
    "stats_max_length": 24,
    "template_spec": [[3, 2]],
}
REQUESTS = [
    EditRequest(
        "a", "The Eiffel Tower is located in the city of", "The Eiffel Tower", "Rome", "Paris"
    ),
    EditRequest("b", "Toyota is a car company from", "Toyota", "Germany", "Japan"),
]
LOCATE_EDITORS = ["rome", "r-rome", "memit", "emmet", "alphaedit", "pmet"]


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model) -> list[str]:
    return sorted(k for k, v in model.state_dict().items() if not torch.equal(before[k], v))


def _mlp_out(family: str, layer: int) -> str:
    if family == "llama":
        return f"model.layers.{layer}.mlp.down_proj.weight"
    return f"transformer.h.{layer}.mlp.c_proj.weight"


@pytest.mark.parametrize("editor", LOCATE_EDITORS)
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_every_editor_writes_only_its_mlp_layers_and_undoes_exactly(
    editor, family, tiny_tokenizer, isolated_cache
):
    model = make_tiny_model(family, len(tiny_tokenizer))
    before = _state(model)
    layers = [1] if editor in ("rome", "r-rome") else [1, 2]
    record = lm_edit.edit(
        model, tiny_tokenizer, REQUESTS, editor, batch_size=2, layers=layers, **FAST
    )
    assert _changed(before, model) == sorted(_mlp_out(family, layer) for layer in layers)
    assert record.case_ids == ["a", "b"]
    record.undo(model)
    assert _changed(before, model) == []


def test_solver_and_distribution_are_independent_choices(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    record = lm_edit.edit(model, tiny_tokenizer, REQUESTS[:1], "rome", layers=[0, 1, 2], **FAST)
    assert _changed(before, model) == [_mlp_out("llama", layer) for layer in (0, 1, 2)]
    record.undo(model)
    lm_edit.edit(model, tiny_tokenizer, REQUESTS, "memit", batch_size=2, layers=[2], **FAST)
    assert _changed(before, model) == [_mlp_out("llama", 2)]


def test_emmet_with_one_fact_is_rome(tiny_tokenizer, isolated_cache):
    shared = {
        **FAST,
        "layers": [1],
        "value_site": "mlp",
        "clamp_norm_factor": 4.0,
        "v_lr": 0.5,
        "v_weight_decay": 0.001,
        "kl_factor": 0.0625,
        "consistent_keys": True,
        "key_average": "flat",  # ROME's average; EMMET (MEMIT family) defaults to per_group
    }
    deltas = []
    for editor in ("rome", "emmet"):
        model = make_tiny_model("llama", len(tiny_tokenizer))
        before = model.get_parameter(_mlp_out("llama", 1)).detach().clone()
        lm_edit.edit(model, tiny_tokenizer, REQUESTS[:1], editor, **shared)
        deltas.append(model.get_parameter(_mlp_out("llama", 1)).detach() - before)
    assert deltas[0].abs().max() > 1e-3
    torch.testing.assert_close(deltas[1], deltas[0], rtol=1e-4, atol=1e-6)


def test_memit_with_overwhelming_preservation_leaves_the_model_unchanged(
    tiny_tokenizer, isolated_cache
):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    lm_edit.edit(
        model, tiny_tokenizer, REQUESTS, "memit", layers=[1, 2], mom2_update_weight=1e15, **FAST
    )
    for name in _changed(before, model):
        assert (model.state_dict()[name] - before[name]).abs().max() < 1e-6


def test_alphaedit_state_belongs_to_the_stream(tiny_tokenizer, isolated_cache):
    settings = {**FAST, "layers": [1, 2], "nullspace_threshold": 0.5, "nullspace_relative": True}
    first = make_tiny_model("llama", len(tiny_tokenizer))
    second = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(first, tiny_tokenizer, "alphaedit", **settings)
    other = EditStream.create(second, tiny_tokenizer, "alphaedit", **settings)
    stream.apply(REQUESTS[:1], progress=False)
    assert isinstance(stream.editor, LocateEditor)
    one = {k: v.clone() for k, v in stream.editor.past_gram.items()}
    stream.apply(REQUESTS[1:], progress=False)
    assert sorted(one) == [1, 2]
    assert all(stream.editor.past_gram[k].trace() > one[k].trace() for k in one)
    other.editor.prepare(second, tiny_tokenizer)
    assert other.editor.past_gram == {}
    stream.undo()
    assert stream.editor.past_gram == {}
    assert list(isolated_cache.glob("stats/*/layer1-*.nullspace-rel0.5.pt"))


def test_alphaedit_keeps_an_earlier_batch_better_than_memit(tiny_tokenizer, isolated_cache):
    """Writing a second batch moves the first batch's edited outputs less with AlphaEdit's
    preserved keys than with MEMIT, on the same model and values."""
    settings = {**FAST, "layers": [1], "cache_values": True}
    moved = {}
    for editor, extra in (
        ("memit", {}),
        ("alphaedit", {"nullspace_threshold": 0.9, "nullspace_relative": True}),
    ):
        model = make_tiny_model("llama", len(tiny_tokenizer))
        stream = EditStream.create(model, tiny_tokenizer, editor, **settings, **extra)
        stream.apply(REQUESTS[:1], progress=False)
        weight = model.get_parameter(_mlp_out("llama", 1))
        after_first = weight.detach().clone()
        keys = stream.editor.past_gram.get(1)
        stream.apply(REQUESTS[1:], progress=False)
        change = weight.detach() - after_first
        if keys is None:
            from lm_edit.editors.locate.keys import request_keys

            templates = stream.editor.templates
            k = request_keys(model, tiny_tokenizer, stream.anatomy, 1, REQUESTS[:1], templates)
            keys = k @ k.T
        moved[editor] = float(torch.trace(change.double() @ keys.double() @ change.double().T))
    assert moved["alphaedit"] < moved["memit"]


def test_cached_values_are_reused_and_give_identical_weights(
    tiny_tokenizer, isolated_cache, monkeypatch
):
    settings = {**FAST, "layers": [1, 2], "cache_values": True}
    states = []
    for attempt in range(2):
        model = make_tiny_model("llama", len(tiny_tokenizer))
        lm_edit.edit(model, tiny_tokenizer, REQUESTS, "memit", batch_size=2, **settings)
        states.append(_state(model))
        if attempt == 0:
            import lm_edit.editors.locate.editor as editor_module

            def fail(*args, **kwargs):
                raise AssertionError("v* was recomputed")

            monkeypatch.setattr(editor_module, "optimise_value", fail)
    assert len(list(isolated_cache.glob("values/*/*.pt"))) == 2
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_pmet_writes_only_mlp_weights(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    lm_edit.edit(model, tiny_tokenizer, REQUESTS, "pmet", batch_size=2, layers=[1, 2], **FAST)
    assert all("mlp.down_proj" in name for name in _changed(before, model))


def _model_with(model_type: str, layers: int, hidden: int, inner: int):
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type)
    for names, value in (
        (("num_hidden_layers", "n_layer"), layers),
        (("hidden_size", "n_embd"), hidden),
        (("intermediate_size", "n_inner"), inner),
    ):
        for name in names:
            if hasattr(config, name) or name in config.attribute_map:
                setattr(config, name, value)
                break

    class Stub:
        pass

    stub = Stub()
    stub.config = config
    return stub


@pytest.mark.parametrize(
    ("editor", "model", "family", "layers", "weight"),
    [
        ("memit", ("gpt2", 48, 1600, 6400), "GPT-2 XL (MEMIT paper)", (13, 14, 15, 16, 17), 20000),
        ("memit", ("gptj", 28, 4096, 16384), "GPT-J 6B (MEMIT paper)", (3, 4, 5, 6, 7, 8), 15000),
        ("emmet", ("gptj", 28, 4096, 16384), "GPT-J 6B (unified-model-editing)", (5,), 1),
        ("emmet", ("gpt2", 48, 1600, 6400), "GPT-2 XL (unified-model-editing)", (17,), 1000),
        ("emmet", ("llama", 32, 4096, 11008), "Llama-2-7B (unified-model-editing)", (5,), 1),
        (
            "alphaedit",
            ("llama", 32, 4096, 14336),
            "Llama-3-8B (AlphaEdit paper)",
            (4, 5, 6, 7, 8),
            None,
        ),
        ("memit", ("llama", 32, 4096, 11008), "Llama-2-7B (EasyEdit)", (4, 5, 6, 7, 8), 15000),
        ("memit", ("qwen2", 28, 3584, 18944), "Qwen2.5-7B (EasyEdit)", (4, 5, 6, 7, 8), 15000),
        ("rome", ("gpt2", 48, 1600, 6400), "GPT-2 XL (ROME paper)", (17,), None),
        ("memit", ("llama", 30, 576, 1536), None, (), None),
    ],
)
def test_family_defaults_and_the_rule_for_unknown_models(editor, model, family, layers, weight):
    spec = resolve_editor(editor, _model_with(*model))
    assert spec.family == family
    assert spec.config.layers == layers
    if editor != "alphaedit" and editor != "rome":
        assert spec.config.mom2_update_weight == weight


@pytest.mark.parametrize(
    ("model", "family"),
    [
        (("llama", 32, 4096, 11008), "Llama-2-7B (EasyEdit)"),
        (("llama", 32, 4096, 14336), "Llama-3-8B (EasyEdit)"),
        (("llama", 28, 3072, 8192), "Llama-3.2-3B (EasyEdit)"),
        (("mistral", 32, 4096, 14336), "Mistral-7B (EasyEdit)"),
        (("qwen2", 28, 3584, 18944), "Qwen2.5-7B (EasyEdit)"),
    ],
)
def test_rome_families_labelled_easyedit_use_easyedits_identity_covariance(model, family):
    """EasyEdit's hparams/ROME files for these models set ``mom2_adjustment: false``; the
    GPT-2 XL family of the ROME paper keeps C⁻¹."""
    spec = resolve_editor("rome", _model_with(*model))
    assert spec.family == family
    assert spec.config.layers == (5,) and spec.config.use_covariance is False
    assert resolve_editor("rome", _model_with("gpt2", 48, 1600, 6400)).config.use_covariance


def test_unknown_models_get_five_layers_ending_at_a_quarter_of_the_depth():
    from lm_edit.editors.locate.editor import resolve_layers

    spec = resolve_editor("memit", _model_with("llama", 30, 576, 1536))
    assert resolve_layers(spec.config, 30) == [4, 5, 6, 7, 8]
    rome = resolve_editor("rome", _model_with("llama", 30, 576, 1536))
    assert resolve_layers(rome.config, 30) == [5]


def test_a_bfloat16_model_is_edited_with_float64_solves(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer)).to(torch.bfloat16)
    before = _state(model)
    lm_edit.edit(model, tiny_tokenizer, REQUESTS, "memit", batch_size=2, layers=[1, 2], **FAST)
    changed = _changed(before, model)
    assert changed == [_mlp_out("llama", 1), _mlp_out("llama", 2)]
    assert all(model.state_dict()[name].dtype == torch.bfloat16 for name in changed)
    assert all(torch.isfinite(model.state_dict()[name]).all() for name in changed)


def _tiny_gemma2(vocab_size: int):
    from transformers import Gemma2Config

    torch.manual_seed(0)
    config = Gemma2Config(
        num_hidden_layers=4,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=vocab_size,
        max_position_embeddings=128,
    )
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("editor", ["memit", "emmet", "alphaedit", "pmet"])
def test_residual_targets_are_refused_where_the_mlp_output_is_normalised(
    editor, tiny_tokenizer, isolated_cache
):
    model = _tiny_gemma2(len(tiny_tokenizer))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="post_feedforward_layernorm.*editor=rome"):
        lm_edit.edit(model, tiny_tokenizer, REQUESTS[:1], editor, layers=[1, 2], **FAST)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_rome_edits_a_model_that_normalises_the_mlp_output(tiny_tokenizer, isolated_cache):
    model = _tiny_gemma2(len(tiny_tokenizer))
    record = lm_edit.edit(model, tiny_tokenizer, REQUESTS[:1], "rome", layers=[1], **FAST)
    assert list(record.originals) == ["model.layers.1.mlp.down_proj.weight"]


@pytest.mark.parametrize("editor", ["rome", "r-rome"])
def test_the_update_writes_v_star_on_the_key_its_paper_constrains(
    editor, tiny_tokenizer, isolated_cache
):
    """ROME's code makes the MLP output v* for the bare prompt's key; r-ROME (Rebuilding
    ROME's Λ* = v* − W k*) for the template-averaged key k*, on a model with MLP bias."""
    from lm_edit.core.anatomy import resolve_anatomy
    from lm_edit.editors.locate.keys import request_keys
    from lm_edit.editors.registry import create_editor

    model = make_tiny_model("gpt2", len(tiny_tokenizer)).double()
    requests = REQUESTS[:1]
    anatomy = resolve_anatomy(model)
    spec = resolve_editor(editor, model, {**FAST, "layers": [1]})
    locate = create_editor(spec, anatomy, seed=0)
    locate.prepare(model, tiny_tokenizer)
    (value,) = locate.target_values(model, tiny_tokenizer, 1, requests)
    templates = locate.templates if editor == "r-rome" else ["{}"]
    keys = request_keys(model, tiny_tokenizer, anatomy, 1, requests, templates).double()
    projection = model.get_submodule("transformer.h.1.mlp.c_proj")
    with torch.no_grad():
        unedited = projection(keys.T)[0]
    locate.apply(model, tiny_tokenizer, requests)
    with torch.no_grad():
        written = projection(keys.T)[0]
    target = value.target.double()
    assert not torch.allclose(unedited, target, atol=1e-3)
    torch.testing.assert_close(written, target, rtol=1e-7, atol=1e-7)


def test_r_rome_refuses_several_layers_by_name(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(ValueError, match=r"residual_from=keys .* layers=\[1, 2\]"):
        lm_edit.edit(model, tiny_tokenizer, REQUESTS[:1], "r-rome", layers=[1, 2], **FAST)
    lm_edit.edit(
        model, tiny_tokenizer, REQUESTS[:1], "r-rome", layers=[1, 2], residual_from="prompt", **FAST
    )
