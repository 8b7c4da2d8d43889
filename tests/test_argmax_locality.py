"""EasyEdit's locality (``locality_tf_same_argmax``): the unedited model's argmax at each
position of the teacher-forced gold answer, kept or not after the edit."""

from __future__ import annotations

import re

from lm_edit.data.requests import EditRequest, Probe
from lm_edit.evaluation.argmax_locality import unedited_argmax_steps
from lm_edit.evaluation.docs import forced_doc
from lm_edit.evaluation.metrics import forced_metrics
from lm_edit.evaluation.probes import case_probes
from lm_edit.evaluation.session import EditSession
from tests.edit_fakes import FactLM

PROMPT = "The Big Apple is"
REQUEST = EditRequest(
    "c", "Alice lives in", "Alice", "Rome", "Oslo", locality=(Probe(PROMPT, "New York"),)
)


class OneTokenFactLM(FactLM):
    """FactLM whose generation honours ``max_gen_toks`` (one word per token)."""

    def generate_until(self, requests, disable_tqdm: bool = False):
        out = []
        for request in requests:
            context, kwargs = request.args
            prompt, answer = self._answer(context)
            rest = answer[len(context) - len(prompt) :]
            text = "".join(re.findall(r"\s*\S+", rest)[: kwargs["max_gen_toks"]])
            for stop in kwargs["until"]:  # as HFLM: the text is cut at a stop string
                text = text.split(stop)[0]
            out.append(text)
        return out


class _Request:
    def __init__(self, pair):
        self.args = tuple(pair)


def _score(model: FactLM, session: EditSession) -> dict[str, float]:
    item = [i for i in case_probes(REQUEST) if i.kind == "locality"][0]
    doc = forced_doc("zsre_edit", item, model.tokenizer, session)
    results = model.loglikelihood([_Request(pair) for pair in doc["requests"]])
    return forced_metrics(doc, results)


def test_every_answer_position_records_the_unedited_argmax():
    model = OneTokenFactLM({PROMPT: "New York"})
    steps = unedited_argmax_steps(model, [REQUEST])
    assert steps == {("c", 0): [[PROMPT, " New"], [PROMPT + " New", " York"]]}


def test_a_line_break_argmax_is_a_position_like_any_other():
    """EasyEdit counts every position of the gold answer; a stop at the line break would
    lose the one where the unedited model's argmax starts a new line."""
    model = OneTokenFactLM({PROMPT: "New\nYork"})
    steps = unedited_argmax_steps(model, [REQUEST])
    assert steps == {("c", 0): [[PROMPT, " New"], [PROMPT + " New", "\nYork"]]}


def test_an_unchanged_model_keeps_every_argmax_and_a_changed_one_loses_some():
    model = OneTokenFactLM({PROMPT: "New York"})
    session = EditSession(
        requests=[],
        editor="x",
        edit_data="t",
        unedited_argmax=unedited_argmax_steps(model, [REQUEST]),
    )
    assert _score(model, session)["locality_tf_same_argmax"] == 1.0
    model.facts[PROMPT] = "New Jersey"  # the first position keeps its argmax, the second not
    assert _score(model, session)["locality_tf_same_argmax"] == 0.5
    model.facts[PROMPT] = "Paris"
    assert _score(model, session)["locality_tf_same_argmax"] == 0.0


def test_without_a_session_the_metric_is_absent():
    model = OneTokenFactLM({PROMPT: "New York"})
    item = [i for i in case_probes(REQUEST) if i.kind == "locality"][0]
    doc = forced_doc("zsre_edit", item, model.tokenizer)
    results = model.loglikelihood([_Request(pair) for pair in doc["requests"]])
    assert "locality_tf_same_argmax" not in forced_metrics(doc, results)
