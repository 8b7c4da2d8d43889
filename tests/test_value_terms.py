"""The terms of the v* optimisation and the template options, against the definitions of
the reference implementations (ROME's compute_v, MEMIT's compute_ks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lm_edit.core.anatomy import resolve_anatomy
from lm_edit.core.tokens import subject_last_token
from lm_edit.data.requests import EditRequest
from lm_edit.editors.locate import values
from lm_edit.editors.locate.keys import keys_at_subject, request_keys
from lm_edit.editors.locate.values import ValueConfig, optimise_value
from lm_edit.editors.registry import create_editor, resolve_editor
from tests.conftest import make_tiny_model

REQUEST = EditRequest("a", "The Eiffel Tower is located in", "The Eiffel Tower", "Rome")
GROUPS = (("{}",), ("The city. {}", "Because it is. {}", "I think so. {}"))


def test_kl_term_reads_the_essence_prompt_at_the_subjects_last_token(tiny_tokenizer, monkeypatch):
    model = make_tiny_model("gpt2", len(tiny_tokenizer))
    seen: list[torch.Tensor] = []
    kl_div = F.kl_div

    def recording(reference, current, **kwargs):
        seen.append(reference.detach().clone())
        return kl_div(reference, current, **kwargs)

    monkeypatch.setattr(values.F, "kl_div", recording)
    config = ValueConfig(v_num_grad_steps=2)
    optimise_value(model, tiny_tokenizer, resolve_anatomy(model), 1, REQUEST, ["{}"], config)
    ids, index = subject_last_token(tiny_tokenizer, "The Eiffel Tower is a", "The Eiffel Tower")
    assert index < len(ids) - 1  # the subject's last token is not the prompt's last
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits.log_softmax(-1)[0, index]
    torch.testing.assert_close(seen[0], expected)


def _editor(model, tokenizer, **overrides):
    spec = resolve_editor("memit", model, {"layers": [1], "context_templates": GROUPS, **overrides})
    return create_editor(spec, resolve_anatomy(model), seed=0)


def test_explicit_templates_are_used_verbatim(tiny_tokenizer, isolated_cache):
    model = make_tiny_model("gpt2", len(tiny_tokenizer))
    editor = _editor(model, tiny_tokenizer, use_covariance=False, solver="equality")
    editor.prepare(model, tiny_tokenizer)
    assert editor.templates == [t for group in GROUPS for t in group]


def test_per_group_key_average_is_the_mean_of_the_group_means(tiny_tokenizer):
    model = make_tiny_model("gpt2", len(tiny_tokenizer))
    anatomy = resolve_anatomy(model)
    flat = [t for group in GROUPS for t in group]
    pairs = [(t.format(REQUEST.prompt), REQUEST.subject) for t in flat]
    each = keys_at_subject(model, tiny_tokenizer, anatomy, 1, pairs)
    expected = (each[:, 0] + each[:, 1:].mean(dim=1)) / 2
    got = request_keys(model, tiny_tokenizer, anatomy, 1, [REQUEST], flat, [1, 3])
    torch.testing.assert_close(got[:, 0], expected)
    plain = request_keys(model, tiny_tokenizer, anatomy, 1, [REQUEST], flat)
    torch.testing.assert_close(plain[:, 0], each.mean(dim=1))


def test_early_stop_on_the_loss_keeps_going_while_the_other_terms_are_large(
    tiny_tokenizer, monkeypatch
):
    model = make_tiny_model("gpt2", len(tiny_tokenizer))
    anatomy = resolve_anatomy(model)
    target_nll = values.target_nll

    def small_after_the_first_step(log_probs, spans):
        small_after_the_first_step.calls += 1
        nll = target_nll(log_probs, spans)
        return nll if small_after_the_first_step.calls == 1 else nll * 1e-6

    steps = {}
    for watched in ("nll", "loss"):
        small_after_the_first_step.calls = 0
        monkeypatch.setattr(values, "target_nll", small_after_the_first_step)
        config = ValueConfig(v_num_grad_steps=6, v_weight_decay=100.0, early_stop_on=watched)
        result = optimise_value(model, tiny_tokenizer, anatomy, 1, REQUEST, ["{}"], config)
        steps[watched] = result.steps
    assert steps == {"nll": 2, "loss": 6}


def test_targets_are_argmax_needs_every_target_token_on_top():
    log_probs = torch.log_softmax(torch.tensor([[[0.0, 2.0, 1.0], [3.0, 0.0, 3.0]]]), dim=-1)
    assert values._targets_are_argmax(log_probs, [([0, 1], [1, 0])])
    assert values._targets_are_argmax(log_probs, [([0, 1], [1, 2])])  # a tie is on top
    assert not values._targets_are_argmax(log_probs, [([0, 1], [2, 0])])


def _argmax_from_pass(monkeypatch, first: int) -> None:
    """Make the argmax test report the target on top from pass ``first`` on (it runs once
    per pass, from the first; the count starts afresh at each call of this helper)."""
    calls = []

    def fake(log_probs, spans):
        calls.append(1)
        return len(calls) >= first

    monkeypatch.setattr(values, "_targets_are_argmax", fake)


def test_pmets_argmax_rule_stops_once_the_kl_term_is_small(tiny_tokenizer, monkeypatch):
    """PMET's compute_zs: on a pass where the target leads everywhere and kl · KL is small
    enough, the optimisation stops before that pass's step."""
    model = make_tiny_model("gpt2", len(tiny_tokenizer))
    anatomy = resolve_anatomy(model)
    plain = ValueConfig(v_num_grad_steps=3, early_stop_nll=0.0)
    expected = optimise_value(model, tiny_tokenizer, anatomy, 1, REQUEST, ["{}"], plain)
    _argmax_from_pass(monkeypatch, 3)
    ruled = ValueConfig(
        v_num_grad_steps=10, early_stop_nll=0.0, argmax_nll_factor=0.1, argmax_kl_stop=1e9
    )
    found = optimise_value(model, tiny_tokenizer, anatomy, 1, REQUEST, ["{}"], ruled)
    assert found.steps == 3
    assert torch.equal(found.target, expected.target)


def test_pmets_argmax_rule_reweighs_the_nll_of_the_next_passes(tiny_tokenizer, monkeypatch):
    model = make_tiny_model("gpt2", len(tiny_tokenizer))
    anatomy = resolve_anatomy(model)
    settings = {"v_num_grad_steps": 6, "early_stop_nll": 0.0, "argmax_kl_stop": 0.0}
    plain = optimise_value(
        model, tiny_tokenizer, anatomy, 1, REQUEST, ["{}"], ValueConfig(**settings)
    )
    ruled = ValueConfig(argmax_nll_factor=0.1, **settings)
    _argmax_from_pass(monkeypatch, 3)
    found = optimise_value(model, tiny_tokenizer, anatomy, 1, REQUEST, ["{}"], ruled)
    assert found.steps == plain.steps == 6
    assert not torch.allclose(found.target, plain.target)
    short = {**settings, "v_num_grad_steps": 3}
    # before the rule fires (the step after pass 3) both runs are the same
    first = optimise_value(model, tiny_tokenizer, anatomy, 1, REQUEST, ["{}"], ValueConfig(**short))
    _argmax_from_pass(monkeypatch, 3)
    again = optimise_value(
        model,
        tiny_tokenizer,
        anatomy,
        1,
        REQUEST,
        ["{}"],
        ValueConfig(argmax_nll_factor=0.1, **short),
    )
    assert torch.equal(first.target, again.target)
