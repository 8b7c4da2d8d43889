"""IKE's demonstrations (Zheng et al., 2023), built from the edit requests themselves.

Every request states a new fact ``F = prompt + " " + target_new`` and yields:

* copy: ``New Fact: F\\nPrompt: F``;
* update: for each rephrase ``R``, ``New Fact: F\\nPrompt: R target_new``;
* retain: for each locality probe ``(P, A)``, ``New Fact: F\\nPrompt: P A``.

A request is then asked as ``<demonstrations>New Fact: F\\nPrompt: <context>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lm_edit.data.requests import EditRequest

Kind = Literal["copy", "update", "retain"]


@dataclass(frozen=True)
class Demonstration:
    """One worked example: which case it came from, its kind and its text."""

    case_id: str
    kind: Kind
    text: str


@dataclass(frozen=True)
class NewFact:
    """An edited fact as the line that introduces a request."""

    case_id: str
    text: str

    def query(self, context: str) -> str:
        """The fact followed by the request's context."""
        return f"New Fact: {self.text}\nPrompt: {context}"


def new_fact(request: EditRequest) -> NewFact:
    """The fact ``request`` states."""
    return NewFact(request.case_id, f"{request.prompt} {request.target_new.strip()}")


def demonstrations(request: EditRequest) -> list[Demonstration]:
    """The copy, update and retain demonstrations of ``request``."""
    fact = new_fact(request)
    target = request.target_new.strip()

    def shown(kind: Kind, prompt: str) -> Demonstration:
        return Demonstration(request.case_id, kind, f"{fact.query(prompt)}\n\n")

    return [
        shown("copy", fact.text),
        *(shown("update", f"{rephrase} {target}") for rephrase in request.rephrases),
        *(shown("retain", f"{p.prompt} {p.answer.strip()}") for p in request.locality),
    ]
