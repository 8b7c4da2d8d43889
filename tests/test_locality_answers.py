"""The unedited model's locality answers: as long as the gold answer, but never whitespace
alone (a bare space token before a number would make the answer vacuous)."""

from __future__ import annotations

from types import MethodType

from lm_edit.data.requests import EditRequest, Probe
from lm_edit.evaluation.model import LOCALITY_MAX_TOKENS, EditedLM

CONTINUATIONS = {
    "The House of Mirth was created in": [" ", "1", "9", "0", "5"],
    "The capital of France is": [" Paris", ",", " the"],
    "Say nothing:": ["\n", "ok"],
    "Only spaces:": [" "] * 40,
}


class GreedyStub:
    """Stands in for the loaded model: one token per word of the gold answer, greedy
    continuations from CONTINUATIONS, and a log of every budget asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []
        self._greedy = MethodType(EditedLM._greedy, self)

    def tok_encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(range(len(text.split())))

    def generate_until(self, instances, disable_tqdm: bool = False) -> list[str]:
        out = []
        for instance in instances:
            prompt, gen = instance.args
            self.asked.append((prompt, gen["max_gen_toks"]))
            text = "".join(CONTINUATIONS[prompt][: gen["max_gen_toks"]])
            out.append(text.split("\n")[0])
        return out


def _request(*prompts: str) -> EditRequest:
    locality = tuple(Probe(p, "Germany") for p in prompts)
    return EditRequest("c", "X is in", "X", "Y", target_true="Z", locality=locality)


def test_whitespace_only_answers_get_tokens_until_they_show_text():
    stub = GreedyStub()
    request = _request(*CONTINUATIONS)
    answers = EditedLM.greedy_locality_answers(stub, [request])
    assert answers[("c", 0)] == " 1"
    assert answers[("c", 1)] == " Paris"
    assert answers[("c", 2)] == ""
    assert answers[("c", 3)].strip() == "" and len(answers[("c", 3)]) == LOCALITY_MAX_TOKENS
    asked = dict.fromkeys(stub.asked)
    assert ("The capital of France is", 1) in asked
    assert ("The capital of France is", 2) not in asked
    assert ("Say nothing:", 2) not in asked
