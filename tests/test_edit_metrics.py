"""Editing metrics on hand-checked examples: answer judging, token-by-token teacher
forcing, both protocols side by side, and individual vs sequential scores."""

from __future__ import annotations

import json
import math

import pytest

from lm_edit.data.requests import EditRequest, Probe
from lm_edit.evaluation.answers import agrees, contains, exact_match, normalize
from lm_edit.evaluation.docs import build_forced_docs, forced_doc, generation_doc
from lm_edit.evaluation.metrics import (
    counterfact_metrics,
    forced_metrics,
    generation_metrics,
    harmonic_score,
)
from lm_edit.evaluation.probes import case_probes
from lm_edit.evaluation.session import EditSession, close_session, open_session
from lm_edit.evaluation.teacher_forcing import Step, forced_score, forced_steps
from tests.edit_fakes import FactLM, WordTokenizer

TOK = WordTokenizer()
REQUEST = EditRequest(
    "c1",
    "The Eiffel Tower is located in the city of",
    "The Eiffel Tower",
    "New York",
    "Paris",
    rephrases=("Where is the Eiffel Tower? In the city of",),
    locality=(Probe("The Louvre is located in the city of", "Paris", "NQ"),),
    portability=(Probe("The Eiffel Tower's country is", "United States", "one_hop"),),
)


def _docs(unedited=None):
    items = case_probes(REQUEST, unedited)
    return [forced_doc("zsre_edit", item, TOK) for item in items], items


# --- judging generated answers -------------------------------------------------------


def test_normalize_drops_case_punctuation_and_articles():
    assert normalize("  The  City of Paris, France. ") == "city of paris france"


def test_exact_match_is_a_whole_word_prefix_of_the_first_line():
    assert exact_match(" Paris, France", ["Paris"]) == 1.0
    assert exact_match(" Parisian food", ["Paris"]) == 0.0
    assert exact_match("\nParis", ["Paris"]) == 1.0
    assert exact_match(" London\nParis", ["Paris"]) == 0.0
    assert exact_match(" the Big Apple", ["New York", "Big Apple"]) == 1.0


def test_a_target_that_is_a_prefix_of_another_matches_its_longer_sibling():
    # Judging by prefix cannot tell "New" from "New York": documented in docs/metrics.md.
    assert exact_match(" New York", ["New"]) == 1.0
    assert exact_match(" New", ["New York"]) == 0.0


def test_contains_needs_whole_words():
    assert contains(" It is in Paris.", ["Paris"]) == 1.0
    assert contains(" It is in Parisville", ["Paris"]) == 0.0


def test_agreement_with_the_unedited_answer():
    assert agrees(" Paris, the capital", " Paris,") == 1.0
    assert agrees(" Lyon", " Paris") == 0.0
    assert agrees("", "") == 1.0 and agrees(" Paris", "") == 0.0


# --- teacher forcing, token by token -------------------------------------------------


def test_steps_put_the_leading_space_in_the_first_answer_token():
    steps = forced_steps(TOK, "The city of", " New York")
    assert steps == [Step("The city of", " New", 1), Step("The city of New", " York", 1)]


def test_a_boundary_the_tokenizer_would_not_reproduce_is_merged(tiny_tokenizer):
    prompt, answer = "The city of", " Parisville"
    ids = tiny_tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    n_answer = len(ids) - len(tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    steps = forced_steps(tiny_tokenizer, prompt, answer)
    assert sum(s.tokens for s in steps) == n_answer > 1
    assert "".join(s.continuation for s in steps) == answer
    for step in steps:
        whole = tiny_tokenizer(step.context + step.continuation, add_special_tokens=False)
        ctx = tiny_tokenizer(step.context, add_special_tokens=False)["input_ids"]
        assert whole["input_ids"][: len(ctx)] == ctx


def test_trailing_whitespace_in_a_context_is_never_a_boundary():
    steps = forced_steps(TOK, "Q:", " 20 06")
    assert [s.continuation for s in steps] == [" 20", " 06"]
    spaced = forced_steps(TOK, "Q:", "  x")
    assert all(s.context == s.context.rstrip() for s in spaced)


def test_forced_score_weights_merged_steps_by_their_tokens():
    steps = [Step("a", " b", 2), Step("a b", " c", 1)]
    score = forced_score(steps, [(-1.0, False), (-0.5, True)])
    assert score.token_accuracy == pytest.approx(1 / 3)
    assert score.exact == 0.0 and score.logprob == -1.5
    with pytest.raises(ValueError, match="Expected 2"):
        forced_score(steps, [(-1.0, True)])


def test_an_empty_answer_is_an_error():
    with pytest.raises(ValueError, match="adds no tokens"):
        forced_steps(TOK, "The city of", "")


# --- the two protocols on one probe --------------------------------------------------


def test_teacher_forcing_and_generation_disagree_on_a_leaked_answer():
    """First answer token wrong, second right once the first is fed in: EasyEdit-style
    token accuracy gives 1/2 while the greedy answer is plainly wrong."""
    docs, items = _docs()
    reliability = docs[0]
    assert reliability["step_slots"] == ["new", "new", "true"]
    results = [(-3.0, False), (-0.1, True), (-1.0, True)]
    tf = forced_metrics(reliability, results)
    assert tf["reliability_tf"] == 0.5
    assert tf["reliability_tf_em"] == 0.0
    assert tf["reliability_prob"] == 0.0  # log P(New York) = -3.1 < log P(Paris) = -1
    gen = generation_metrics(generation_doc("zsre_edit", items[0]), [" Paris, France"])
    assert gen == {"reliability_gen": 0.0, "reliability_gen_contains": 0.0}


def test_locality_against_gold_and_against_the_unedited_model():
    docs, items = _docs({("c1", 0): " Paris and"})
    locality = docs[2]
    assert locality["step_slots"] == ["gold", "new", "new", "unedited", "unedited"]
    results = [(-0.2, True), (-4.0, False), (-1.0, False), (-0.2, True), (-2.0, False)]
    assert forced_metrics(locality, results) == {
        "locality_tf_gold": 1.0,
        "locality_tf_em_gold": 1.0,
        "locality_tf_unedited": 0.5,
        "locality_tf_em_unedited": 0.0,
    }
    gen_doc = generation_doc("zsre_edit", items[2])
    assert generation_metrics(gen_doc, [" Paris is"])["locality_gen_gold"] == 1.0
    unedited_doc = generation_doc("zsre_edit", case_probes(REQUEST, {("c1", 0): " Paris and"})[2])
    out = generation_metrics(unedited_doc, [" Paris is"])
    assert out["locality_gen_unedited"] == 0.0 and out["locality_gen_gold"] == 1.0


def test_the_unedited_answer_is_forced_exactly_as_generated(tiny_tokenizer):
    item = case_probes(REQUEST, {("c1", 0): "?"})[2]
    doc = forced_doc("zsre_edit", item, tiny_tokenizer)
    assert doc["requests"][-1] == [item.prompt, "?"]
    assert doc["requests"][0][1].startswith(" P")


def test_an_unedited_answer_merging_into_the_prompt_is_left_out(caplog):
    item = case_probes(REQUEST, {("c1", 0): "s"})[2]
    assert forced_doc("zsre_edit", item, TOK)["step_slots"] == ["gold", "new", "new"]
    assert "merges into the prompt's last token" in caplog.text


def test_an_empty_unedited_answer_is_not_teacher_forced():
    item = case_probes(REQUEST, {("c1", 0): "\n"})[2]
    assert forced_doc("zsre_edit", item, TOK)["step_slots"] == ["gold", "new", "new"]
    assert (
        generation_metrics(generation_doc("zsre_edit", item), [""])["locality_gen_unedited"] == 1.0
    )


def test_portability_both_protocols():
    docs, items = _docs()
    results = [(-1.0, True), (-2.0, False)]
    assert forced_metrics(docs[3], results) == {"portability_tf": 0.5, "portability_tf_em": 0.0}
    gen = generation_metrics(generation_doc("zsre_edit", items[3]), [" the United States."])
    assert gen == {"portability_gen": 1.0, "portability_gen_contains": 1.0}


def test_counterfact_metrics_hand_checked():
    docs, _ = _docs()
    out = counterfact_metrics(docs[0], [(-0.5, True), (-0.5, True), (-3.0, False)])
    assert out["es_prob"] == 1.0 and out["s_prob"] == ("es", 1.0)
    # ROME's magnitude: exp(-mean NLL) of "New York" (2 tokens) minus that of "Paris"
    assert out["em_prob"] == pytest.approx(math.exp(-0.5) - math.exp(-3.0))
    assert out["reliability_tf"] == 1.0
    locality = docs[2]
    out = counterfact_metrics(locality, [(-2.0, True), (-0.5, True), (-0.5, True)])
    assert out["ns_prob"] == 0.0 and out["ns_prob_sum"] == 0.0
    assert out["nm_prob"] == pytest.approx(math.exp(-2.0) - math.exp(-0.5))


def test_prob_compares_mean_per_token_log_probabilities_and_prob_sum_the_sums():
    """ "New York" at -1.0 per token (-2.0 in all) against "Paris" at -1.5: ROME's mean NLL
    comparison counts the edit as a success, the whole-answer probability does not."""
    docs, _ = _docs()
    out = counterfact_metrics(docs[0], [(-1.0, False), (-1.0, False), (-1.5, True)])
    assert out["es_prob"] == 1.0 and out["es_prob_sum"] == 0.0
    assert out["reliability_prob"] == 1.0
    assert out["s_prob"] == ("es", 1.0)


def test_counterfact_without_true_object_leaves_es_out():
    request = EditRequest("n", "Alice works for", "Alice", "Acme")
    doc = forced_doc("counterfact_edit", case_probes(request)[0], TOK)
    out = counterfact_metrics(doc, [(-1.0, True)])
    assert out["reliability_tf"] == 1.0
    assert not {"es_prob", "em_prob", "s_prob", "reliability_prob"} & set(out)


def test_counterfact_docs_log_cases_without_true_object(caplog):
    requests = [
        EditRequest("with", "Bob works for", "Bob", "Acme", target_true="Initech"),
        EditRequest("without", "Alice works for", "Alice", "Acme"),
    ]
    session = EditSession(requests=requests, editor="fake", edit_data="test", tokenizer=TOK)
    open_session(session)
    try:
        with caplog.at_level("WARNING", logger="lm_edit"):
            docs = list(build_forced_docs(view="counterfact_edit")["test"])
    finally:
        close_session()
    assert {doc["case_id"] for doc in docs} == {"with", "without"}
    assert "counterfact_edit: 1 of 2 cases have no true object" in caplog.text
    assert caplog.text.rstrip().endswith(": without")


def test_harmonic_score():
    items = [("es", 1.0), ("es", 1.0), ("ps", 0.5), ("ps", 0.5), ("ns", 1.0)]
    assert harmonic_score(items) == pytest.approx(3 / (1 + 2 + 1))
    assert harmonic_score([("es", 1.0), ("ns", 0.0)]) == 0.0


def test_knowedit_views_break_metrics_down_by_category():
    request = EditRequest(
        "k",
        "The capital of Freedonia is",
        "Freedonia",
        "Lyon",
        portability=(Probe("The river of Freedonia's capital is", "Rhone", "Subject_Aliasing"),),
    )
    item = case_probes(request)[1]
    doc = forced_doc("knowedit_zsre", item, TOK)
    assert forced_metrics(doc, [(-1.0, True)])["portability_subject_aliasing_tf"] == 1.0
    assert "portability_subject_aliasing_tf" not in forced_metrics(
        forced_doc("zsre_edit", item, TOK), [(-1.0, True)]
    )


# --- individual vs sequential --------------------------------------------------------


class _Record:
    def __init__(self, case_ids):
        self.case_ids = case_ids

    def summary(self):
        return {"case_ids": self.case_ids}


def _rewrite(fact_lm: FactLM, request: EditRequest) -> None:
    for prompt in (request.prompt, *request.rephrases):
        fact_lm.facts[prompt] = request.target_new


def test_individual_and_sequential_scores_differ_when_a_later_edit_overwrites():
    """Two edits of the same fact in one stream: the first one scores 1 right after it
    was applied (individual) and 0 after the second overwrote it (sequential)."""
    from lm_edit.evaluation.model import EditedLM

    class FakeEditedLM(FactLM):
        n_applied = EditedLM.n_applied
        _after_batch = EditedLM._after_batch

    first = EditRequest("a", "Alice lives in", "Alice", "Rome", "Oslo")
    second = EditRequest("b", "Alice lives in", "Alice", "Lima", "Oslo")
    model = FakeEditedLM({"Alice lives in": "Oslo"})
    model.planned_requests = [first, second]
    model.individual_scores = True
    model.edit_session = EditSession(requests=[], editor="fake", edit_data="test", tokenizer=TOK)
    for request in (first, second):
        _rewrite(model, request)
        model._after_batch(_Record([request.case_id]))
    assert model.edit_session.individual["a"]["reliability/0"] == {
        "tf": 1.0,
        "tf_em": 1.0,
        "prob": 1.0,
        "gen": 1.0,
    }
    open_session(model.edit_session)
    try:
        docs = list(build_forced_docs(view="zsre_edit")["test"])
    finally:
        close_session()
    by_case = {}
    for doc in docs:
        results = model.loglikelihood(
            [type("R", (), {"args": tuple(pair)}) for pair in doc["requests"]]
        )
        by_case[doc["case_id"]] = forced_metrics(doc, results)
    assert by_case["a"]["reliability_tf_individual"] == 1.0
    assert by_case["a"]["reliability_tf"] == 0.0
    assert by_case["b"]["reliability_tf_individual"] == by_case["b"]["reliability_tf"] == 1.0
    assert json.loads(docs[0]["individual"])["gen"] == 1.0
    assert [r.case_id for r in model.edit_session.requests] == ["a", "b"]
