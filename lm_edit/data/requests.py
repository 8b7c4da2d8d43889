"""The one edit-request type every loader produces and every editor consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class EditRequestError(ValueError):
    """An edit request is malformed (names the case and the fix)."""


@dataclass(frozen=True)
class Probe:
    """A prompt with its expected answer, used to score one aspect of an edit.

    ``answer`` is the gold answer (for locality: the fact that must not change; for
    portability: the answer implied by the edit). ``aliases`` are other acceptable answers.
    ``category`` keeps the dataset's own label (for example KnowEdit's ``Reasoning``).
    """

    prompt: str
    answer: str
    category: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class EditRequest:
    """One fact to write into a model: ``prompt`` (containing ``subject``) -> ``target_new``.

    ``prompt`` is the full prompt with the subject written in; ``target_true`` is the old
    answer when known. ``rephrases`` test generality, ``locality`` probes test that
    unrelated facts survive, ``portability`` probes test reasoning over the new fact.
    ``source`` says where the request came from (``file:line`` or dataset name and index).
    """

    case_id: str
    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None
    rephrases: tuple[str, ...] = ()
    locality: tuple[Probe, ...] = ()
    portability: tuple[Probe, ...] = ()
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"case {self.case_id!r}" + (f" ({self.source})" if self.source else "")
        for name in ("prompt", "subject", "target_new"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise EditRequestError(f"{where}: field '{name}' is missing or empty.")
        if self.subject not in self.prompt:
            raise EditRequestError(
                f"{where}: subject {self.subject!r} does not occur in prompt {self.prompt!r}. "
                "Fix the record so the prompt contains the subject verbatim."
            )

    @property
    def template(self) -> str:
        """The prompt with the last occurrence of the subject replaced by ``{}``."""
        cut = self.prompt.rfind(self.subject)
        head, tail = self.prompt[:cut], self.prompt[cut + len(self.subject) :]
        return (
            head.replace("{", "{{").replace("}", "}}")
            + "{}"
            + tail.replace("{", "{{").replace("}", "}}")
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditRequest:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        for key in ("locality", "portability"):
            data[key] = tuple(
                Probe(**{**p, "aliases": tuple(p.get("aliases", ()))}) for p in data.get(key, ())
            )
        data["rephrases"] = tuple(data.get("rephrases", ()))
        return cls(**data)
