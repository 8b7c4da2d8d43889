"""The memory of in-context edits, registered on a model as its prompt hook.

For each request context the memory picks the most relevant edited fact, then the ``k``
most relevant demonstrations of the *other* edited cases (retrieved with the fact and the
context as query, as EasyEdit does), and returns::

    <demonstrations, most relevant first>New Fact: <fact>\\nPrompt: <context>

A case's own demonstrations are left out because they contain its rephrases and locality
probes with their answers, which are what the editing tasks ask; IKE's demonstrations
likewise come from facts other than the one being tested. The order is EasyEdit's (most
relevant first): on SmolLM2-135M it raised the new target's log-likelihood more than the
reverse order did. Demonstrations that would
push the prompt past the token budget the caller gives are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from lm_edit.data.requests import EditRequest
from lm_edit.editors.incontext.demonstrations import (
    Demonstration,
    NewFact,
    demonstrations,
    new_fact,
)
from lm_edit.editors.incontext.retrieval import Retriever


@dataclass(frozen=True)
class Entry:
    """What one request added to the memory."""

    fact: NewFact
    demonstrations: tuple[Demonstration, ...]


class InContextMemory:
    """Edited facts and their demonstrations; a :class:`~lm_edit.core.prompts.PromptHook`."""

    def __init__(self, tokenizer, fact_retriever: Retriever, demo_retriever: Retriever, k: int):
        self.tokenizer = tokenizer
        self.k = k
        self.entries: list[Entry] = []
        self._facts = fact_retriever
        self._demos = demo_retriever
        self._indexed = False
        self._lengths: dict[str, int] = {}

    def add(self, requests: list[EditRequest]) -> list[Entry]:
        """Store the facts and demonstrations of ``requests``; return what was added."""
        added = [Entry(new_fact(r), tuple(demonstrations(r))) for r in requests]
        self.entries.extend(added)
        self._indexed = False
        return added

    def remove(self, entries: list[Entry]) -> None:
        """Forget ``entries`` (the undo of :meth:`add`)."""
        gone = {id(entry) for entry in entries}
        self.entries = [entry for entry in self.entries if id(entry) not in gone]
        self._indexed = False

    @property
    def all_demonstrations(self) -> list[Demonstration]:
        """Every stored demonstration, in edit order."""
        return [demo for entry in self.entries for demo in entry.demonstrations]

    def _index(self) -> None:
        if not self._indexed:
            self._facts.index([entry.fact.text for entry in self.entries])
            self._demos.index([demo.text for demo in self.all_demonstrations])
            self._indexed = True

    def tokens(self, text: str) -> int:
        """Length of ``text`` in tokens (no special tokens), cached for stored texts."""
        if text not in self._lengths:
            self._lengths[text] = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._lengths[text]

    def select(self, context: str, budget: int | None) -> tuple[NewFact, list[Demonstration]]:
        """The fact and the demonstrations (in prompt order) for ``context``."""
        self._index()
        fact_scores = self._facts.scores(context)
        fact = self.entries[int(_ranking(fact_scores)[0])].fact
        demos = self.all_demonstrations
        scores = self._demos.scores(fact.query(context))
        room = None
        if budget is not None:
            room = (
                budget
                - self.tokens(fact.query(""))
                - len(self.tokenizer(context, add_special_tokens=False)["input_ids"])
            )
        chosen: list[Demonstration] = []
        for index in _ranking(scores):
            if len(chosen) == self.k:
                break
            demo = demos[index]
            if demo.case_id == fact.case_id:
                continue
            if room is not None:
                if self.tokens(demo.text) > room:
                    continue
                room -= self.tokens(demo.text)
            chosen.append(demo)
        return fact, chosen

    def rewrite(self, context: str, budget: int | None) -> tuple[str, int]:
        """``context`` preceded by its demonstrations and new fact, and the tokens added."""
        if not self.entries:
            return context, 0
        fact, chosen = self.select(context, budget)
        prefix = "".join(demo.text for demo in chosen) + fact.query("")
        added = sum(self.tokens(demo.text) for demo in chosen) + self.tokens(fact.query(""))
        return prefix + context, added


def _ranking(scores) -> list[int]:
    """Indices by descending score; ties keep the stored order."""
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
