"""One raw edit-data record and the helpers every format converter reads it with; the
:class:`Format` a converter is registered as."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lm_edit.data.requests import EditRequest, EditRequestError, Probe

ABSENT = object()


@dataclass
class Record:
    """One raw record, where it came from, and what converting it added or left out."""

    data: Mapping[str, Any]
    where: str
    notes: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def error(self, message: str) -> EditRequestError:
        return EditRequestError(f"{self.where}: {message}")

    def get(self, name: str) -> Any:
        return self.data.get(name)

    def _value(self, name: str, value: Any) -> Any:
        return self.data.get(name) if value is ABSENT else value

    def text(self, name: str, value: Any = ABSENT) -> str:
        """A required non-empty string, stripped."""
        value = self._value(name, value)
        if value is None:
            raise self.error(f"field '{name}' is missing.")
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"field '{name}' must be a non-empty string, got {value!r}.")
        return value.strip()

    def texts(self, name: str, value: Any = ABSENT) -> tuple[str, ...]:
        """An optional string or list of strings, as a tuple."""
        value = self._value(name, value)
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        return tuple(self.text(f"{name}[{i}]", item) for i, item in enumerate(items))

    def mapping(self, name: str, value: Any = ABSENT) -> Mapping[str, Any]:
        """An optional JSON object (absent gives an empty one)."""
        value = self._value(name, value)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(f"field '{name}' must be an object, got {value!r}.")
        return value

    def items(self, name: str, value: Any = ABSENT) -> list[Any]:
        """An optional JSON list (absent gives an empty one)."""
        value = self._value(name, value)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(f"field '{name}' must be a list, got {value!r}.")
        return value

    def answers(self, name: str, value: Any = ABSENT) -> list[str]:
        """A ground truth (string or nested lists of strings) as distinct non-empty strings."""
        answers: list[str] = []
        for item in flatten(self._value(name, value)):
            if not isinstance(item, str):
                raise self.error(f"field '{name}' must hold strings, got {item!r}.")
            if item.strip() and item.strip() not in answers:
                answers.append(item.strip())
        return answers

    def truth(self, name: str, value: Any = ABSENT) -> str | None:
        """The old answer: first of the ground truths, the others kept as aliases in extra."""
        value = self._value(name, value)
        answers = self.answers(name, value)
        if value is not None and not answers:
            self.notes.append(f"{self.where}: '{name}' is empty; target_true left unset")
        if len(answers) > 1:
            self.extra["target_true_aliases"] = answers[1:]
        return answers[0] if answers else None

    def probe(self, name: str, prompt: Any, answer: Any, category: str) -> Probe | None:
        """One probe; ``None`` (and a note) when it has no answer."""
        text = self.text(f"{name}.prompt", prompt)
        answers = self.answers(f"{name}.answer", answer)
        if not answers:
            self.notes.append(f"{self.where}: {name} probe {text!r} has no answer; left out")
            return None
        return Probe(text, answers[0], category, tuple(answers[1:]))

    def paired_probes(self, name: str, prompts: Any, answers: Any, category: str) -> list[Probe]:
        """Probes from parallel prompt/answer fields (EasyEdit's flat ``*_prompt`` fields)."""
        if prompts is None:
            return []
        if not isinstance(prompts, list):
            return kept([self.probe(name, prompts, answers, category)])
        if len(prompts) == 1:
            return kept([self.probe(name, prompts[0], answers, category)])
        if not isinstance(answers, list) or len(answers) != len(prompts):
            raise self.error(
                f"'{name}' has {len(prompts)} prompts but its ground truth does not list "
                "one answer per prompt."
            )
        pairs = zip(prompts, answers, strict=True)
        return kept(self.probe(name, prompt, answer, category) for prompt, answer in pairs)

    def grouped_probes(self, name: str) -> list[Probe]:
        """Probes from KnowEdit's ``{category: [{prompt, ground_truth}]}`` objects."""
        probes: list[Probe | None] = []
        for category, entries in self.mapping(name).items():
            for i, entry in enumerate(self.items(f"{name}.{category}", entries)):
                entry = self.mapping(f"{name}.{category}[{i}]", entry)
                probes.append(
                    self.probe(
                        f"{name}.{category}[{i}]",
                        entry.get("prompt"),
                        entry.get("ground_truth"),
                        category,
                    )
                )
        return kept(probes)

    def listed_probes(self, name: str) -> list[Probe]:
        """Probes from our own ``[{prompt, answer, category?, aliases?}]`` lists."""
        probes: list[Probe | None] = []
        for i, entry in enumerate(self.items(name)):
            entry = self.mapping(f"{name}[{i}]", entry)
            answers = [entry.get("answer"), entry.get("aliases")]
            category = entry.get("category") or ""
            if not isinstance(category, str):
                raise self.error(f"field '{name}[{i}].category' must be a string.")
            probes.append(self.probe(f"{name}[{i}]", entry.get("prompt"), answers, category))
        return kept(probes)


def flatten(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from flatten(item)
    elif value is not None:
        yield value


def kept(probes: Iterator[Probe | None] | Sequence[Probe | None]) -> list[Probe]:
    return [probe for probe in probes if probe is not None]


def one_hop(rec: Record) -> list[Probe | None]:
    """The one-hop portability probe (``portability: {New Question, New Answer}``)."""
    portability = rec.mapping("portability")
    if not portability:
        return []
    if portability.get("Recalled Relation") is not None:
        rec.extra["recalled_relation"] = portability["Recalled Relation"]
    question, answer = portability.get("New Question"), portability.get("New Answer")
    return [rec.probe("portability", question, answer, "one_hop")]


@dataclass(frozen=True)
class Format:
    """A detected edit-data format: its key (logged in ``extra["format"]``), label, the
    keys it maps, and its converter (one record to fields) or expander (one record to
    several requests)."""

    key: str
    label: str
    keys: frozenset[str]
    convert: Callable[[Record], dict[str, Any]] | None = None
    expand: Callable[[Any, str, str], list[EditRequest]] | None = None
