"""Small fakes for the editing-metric tests: a word-level tokenizer and an LM whose
"knowledge" is a dictionary that a fake editor overwrites."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = re.compile(r"\s*\S+")


class WordTokenizer:
    """One token per word, with its leading whitespace (like byte-level BPE's ``Ġword``).
    Trailing whitespace is its own token."""

    is_fast = True

    def _spans(self, text: str) -> list[tuple[int, int]]:
        spans = [m.span() for m in _WORD.finditer(text)]
        end = spans[-1][1] if spans else 0
        if end < len(text):
            spans.append((end, len(text)))
        return spans

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping=False):
        spans = self._spans(text)
        out = {"input_ids": [hash(text[a:b]) % 100_000 for a, b in spans]}
        if return_offsets_mapping:
            out["offset_mapping"] = spans
        return out


@dataclass
class FactLM:
    """Answers ``facts[prompt]`` greedily; loglikelihood is -1 for each token that follows
    the stored answer (then greedy) and -5 otherwise."""

    facts: dict[str, str] = field(default_factory=dict)
    tokenizer: WordTokenizer = field(default_factory=WordTokenizer)

    def _answer(self, context: str) -> tuple[str, str]:
        for prompt, answer in self.facts.items():
            if context.startswith(prompt):
                return prompt, " " + answer
        return context, ""

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        out = []
        for request in requests:
            context, continuation = request.args
            prompt, answer = self._answer(context)
            done = context[len(prompt) :]
            greedy = answer.startswith(done + continuation)
            out.append((-1.0 if greedy else -5.0, greedy))
        return out

    def tok_encode(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

    def generate_until(self, requests, disable_tqdm: bool = False):
        return [self._answer(request.args[0])[1] for request in requests]
