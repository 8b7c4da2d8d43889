"""IKE: the demonstrations are the paper's three kinds, retrieval picks the relevant fact
and leaves the case's own probes out, every request edited-hf serves (log-likelihood and
generation) carries them within the model's length, undo restores the scores exactly,
the weights never change, and a sentence model that is unavailable offline is refused
with a clear message. On SmolLM2 the new target's log-likelihood rises."""

from __future__ import annotations

import logging
import sys
import types

import pytest
from lm_eval.api.instance import Instance

from lm_edit.core.prompts import prompt_hooks
from lm_edit.core.record import temporarily_unedited
from lm_edit.data.requests import EditRequest, Probe
from lm_edit.editors.incontext.demonstrations import demonstrations
from lm_edit.editors.incontext.memory import InContextMemory
from lm_edit.editors.incontext.retrieval import RetrieverUnavailableError, TfidfRetriever
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.test_editor_lifecycle import REQUESTS, _same_state, _state

CASE = EditRequest(
    "c1",
    "The Colosseum is located in the city of",
    "The Colosseum",
    "Madrid",
    "Rome",
    rephrases=("Where is the Colosseum? It is in",),
    locality=(Probe("The Louvre is located in the city of", "Paris"),),
)
OTHER = EditRequest(
    "c2",
    "Toyota is a car company from",
    "Toyota",
    "Germany",
    "Japan",
    rephrases=("Toyota makes cars in",),
    locality=(Probe("Volkswagen is a car company from", "Germany"),),
)


def test_demonstrations_are_copy_update_and_retain():
    fact = "New Fact: The Colosseum is located in the city of Madrid\nPrompt: "
    assert [(d.kind, d.text) for d in demonstrations(CASE)] == [
        ("copy", fact + "The Colosseum is located in the city of Madrid\n\n"),
        ("update", fact + "Where is the Colosseum? It is in Madrid\n\n"),
        ("retain", fact + "The Louvre is located in the city of Paris\n\n"),
    ]


def _memory(tokenizer, k: int = 8) -> InContextMemory:
    memory = InContextMemory(tokenizer, TfidfRetriever(), TfidfRetriever(), k)
    memory.add([CASE, OTHER])
    return memory


def test_the_relevant_fact_is_stated_and_its_own_probes_are_left_out(tiny_tokenizer):
    memory = _memory(tiny_tokenizer)
    text, added = memory.rewrite("Where is the Colosseum? It is in", None)
    head, _, asked = text.rpartition("New Fact: ")
    assert asked == (
        "The Colosseum is located in the city of Madrid\nPrompt: Where is the Colosseum? It is in"
    )
    assert "Colosseum" not in head and head.count("New Fact: Toyota") == 3
    assert added > 0
    text, _ = memory.rewrite("Toyota makes cars in", None)
    assert text.rpartition("New Fact: ")[2].startswith("Toyota is a car company from Germany")
    assert "Toyota makes cars in Germany" not in text.rpartition("New Fact: ")[0]


def test_k_and_the_token_budget_limit_the_demonstrations(tiny_tokenizer):
    memory = _memory(tiny_tokenizer, k=2)
    text, _ = memory.rewrite("The Colosseum is in", None)
    assert text.count("New Fact: ") == 3
    unlimited, _ = _memory(tiny_tokenizer).rewrite("The Colosseum is in", None)
    length = len(tiny_tokenizer(unlimited, add_special_tokens=False)["input_ids"])
    budget = length - 5
    fitted, _ = _memory(tiny_tokenizer).rewrite("The Colosseum is in", budget)
    assert len(tiny_tokenizer(fitted, add_special_tokens=False)["input_ids"]) <= budget
    assert fitted.count("New Fact: ") < unlimited.count("New Fact: ")
    assert fitted.endswith("Prompt: The Colosseum is in")


def test_weights_never_change_and_the_hook_is_recorded(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    stream = EditStream.create(model, tiny_tokenizer, "ike")
    record = stream.apply(REQUESTS, batch_size=2, progress=False)[0]
    assert _same_state(before, model) and len(prompt_hooks(model)) == 1
    assert not record.weights_only and record.summary()["prompt_hooks"] == 1
    assert record.details == {"facts": 2, "demonstrations": 2}
    stream.undo()
    assert not prompt_hooks(model) and stream.editor.memory is None


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory, tiny_tokenizer):
    """edited-hf on a saved tiny llama, with the first three demo cases edited by IKE."""
    from lm_edit.evaluation.model import EditedLM

    folder = tmp_path_factory.mktemp("ike-model")
    model = make_tiny_model("llama", len(tiny_tokenizer))
    model.config.max_position_embeddings = 1024  # rotary: no position table to grow
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return EditedLM(
        pretrained=str(folder),
        device="cpu",
        editor="ike",
        n_edits=3,
        edit_data="demo",
        individual_scores=False,
        max_length=256,
    )


def _loglikelihood(lm, pairs):
    instances = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    return [score for score, _ in lm.loglikelihood(instances, disable_tqdm=True)]


def test_edited_hf_serves_every_request_with_the_demonstrations(tiny_lm, monkeypatch, caplog):
    lm = tiny_lm
    cases = lm.edit_session.requests
    pairs = [(c.prompt, " " + c.target_new) for c in cases] + [("Paris is", " " + "x" * 120)]
    with temporarily_unedited(lm.model, lm.edit_stream.records):
        unedited = _loglikelihood(lm, pairs)
    seen: list[tuple[str, int]] = []
    score_tokens = lm._loglikelihood_tokens

    def spy(requests, **kwargs):
        seen.extend((r[0][0], len(r[1]) + len(r[2])) for r in requests)
        return score_tokens(requests, **kwargs)

    monkeypatch.setattr(lm, "_loglikelihood_tokens", spy)
    with caplog.at_level(logging.INFO, logger="lm_edit"):
        edited = _loglikelihood(lm, pairs)
    assert "tokens per request to 4 loglikelihood requests" in caplog.text
    assert lm.prompt_cost.requests >= 4 and lm.prompt_cost.mean_added > 0
    for (context, length), case in zip(seen, cases, strict=False):
        assert context.endswith(f"New Fact: {case.prompt} {case.target_new}\nPrompt: {case.prompt}")
        assert "New Fact: " in context.rpartition("New Fact: ")[0]  # other cases' examples
        assert length <= lm.max_length
    assert all(length <= lm.max_length + 1 for _, length in seen)
    assert edited != unedited

    contexts: list[str] = []
    encode = lm.tok_batch_encode

    def spy_encode(strings, **kwargs):
        contexts.extend(strings)
        return encode(strings, **kwargs)

    monkeypatch.setattr(lm, "tok_batch_encode", spy_encode)
    until = {"until": ["\n"], "max_gen_toks": 4, "do_sample": False}
    lm.generate_until([Instance("generate_until", {}, (cases[0].prompt, until), 0)])
    assert contexts[0].endswith(
        f"New Fact: {cases[0].prompt} {cases[0].target_new}\nPrompt: {cases[0].prompt}"
    )


def test_undo_restores_the_unedited_scores_exactly(tiny_lm, tiny_tokenizer):
    lm = tiny_lm
    pairs = [(c.prompt, " " + c.target_new) for c in lm.edit_session.requests]
    with temporarily_unedited(lm.model, lm.edit_stream.records):
        unedited = _loglikelihood(lm, pairs)
        assert not prompt_hooks(lm.model)
    assert _loglikelihood(lm, pairs) != unedited
    lm.edit_stream.undo()
    assert _loglikelihood(lm, pairs) == unedited
    lm.edit_stream.apply(lm.edit_session.requests, progress=False)  # back for other tests


@pytest.mark.parametrize("bad", [{"k": -1}, {"retriever": "bm25"}])
def test_bad_settings_are_refused(bad, tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(ValueError, match=next(iter(bad))):
        EditStream.create(model, tiny_tokenizer, "ike", **bad)


def test_sentence_retriever_without_the_package_says_how_to_get_it(tiny_tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "ike", retriever="sentence-transformers")
    with pytest.raises(RetrieverUnavailableError) as error:
        stream.apply(REQUESTS[:1], progress=False)
    message = str(error.value)
    assert "pip install sentence-transformers" in message
    assert "sentence-transformers/all-MiniLM-L6-v2" in message and "retriever=tfidf" in message
    assert not prompt_hooks(model)


def test_sentence_model_missing_offline_is_not_downloaded(tiny_tokenizer, monkeypatch):
    calls = []

    class NotCached:
        def __init__(self, name, device=None, local_files_only=False):
            calls.append((name, local_files_only))
            raise OSError(f"{name} is not in the cache")

    monkeypatch.setitem(
        sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=NotCached)
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(
        model, tiny_tokenizer, "ike", retriever="sentence-transformers", sentence_model="org/st"
    )
    with pytest.raises(RetrieverUnavailableError, match=r"'org/st'.*HF_HUB_OFFLINE=1.*hf download"):
        stream.apply(REQUESTS[:1], progress=False)
    assert calls == [("org/st", True)]


@pytest.mark.slow
def test_the_new_target_scores_higher_on_smollm2():
    from lm_edit.evaluation.model import EditedLM

    lm = EditedLM(
        pretrained="smollm2-135m",
        device="cpu",
        editor="ike",
        n_edits=4,
        edit_data="demo",
        individual_scores=False,
        k=0,  # the new-fact line alone: other cases' demonstrations confuse this small model
    )
    cases = lm.edit_session.requests
    new = [(c.prompt, " " + c.target_new) for c in cases]
    with temporarily_unedited(lm.model, lm.edit_stream.records):
        before = _loglikelihood(lm, new)
    after = _loglikelihood(lm, new)
    gains = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(gains) / len(gains) > 0.5, gains
    assert sum(gain > 0 for gain in gains) >= 3, gains
    until = {"until": ["\n"], "max_gen_toks": 6, "do_sample": False}
    lm.generate_until([Instance("generate_until", {}, (cases[0].prompt, until), 0)])
    assert lm.prompt_cost.requests == len(cases) + 1 and lm.prompt_cost.mean_added > 10
