"""SERAC's edit memory, registered on a model as its prompt hook.

For each request context the memory finds the stored edit most similar to it under the
scope classifier; when that similarity exceeds ``threshold`` (the reference's 0.5) the
request is in scope and is answered by the counterfactual model, which is the unedited
model itself reading the edit before the request (the reference's ``freeze_cntr``
setting)::

    <template with the edit's prompt and new target, ending in the request>

Requests out of scope are left as they are, so the unedited model answers them. An edit
is described to the classifier by its prompt (the reference drops the last word of
"prompt target", which is the same for one-word targets)."""

from __future__ import annotations

import logging
import string
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.data.requests import EditRequest
from lm_edit.editors.serac.classifier import ScopeClassifier, text_features

logger = logging.getLogger(__name__)

QUERY = "{query}"
FIELDS = frozenset({"prompt", "target", "query"})
TEMPLATES = {
    "reference": "{prompt} {target} {query}",
    "new-fact": "New Fact: {prompt} {target}\nPrompt: {query}",
}
"""Named counterfactual templates: the reference's input, and IKE's new-fact wording."""


def resolve_template(template: str) -> str:
    """``template`` itself, or the template it names (:data:`TEMPLATES`)."""
    return TEMPLATES.get(template, template)


def check_template(template: str) -> None:
    """Refuse a counterfactual template that does not end with ``{query}`` or names a
    field other than ``{prompt}``, ``{target}`` and ``{query}`` (a name in
    :data:`TEMPLATES` stands for its template)."""
    template = resolve_template(template)
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as error:
        raise ValueError(f"template={template!r} is not a format string: {error}") from error
    unknown = sorted(set(names) - FIELDS)
    if unknown or not template.endswith(QUERY) or names.count("query") != 1:
        raise ValueError(
            f"template={template!r} must end with {{query}} (once) and may also use {{prompt}} "
            f"and {{target}}{'; unknown field(s): ' + ', '.join(unknown) if unknown else ''}, "
            f"or be one of {', '.join(TEMPLATES)}. Example: template='{{prompt}} {{target}} "
            "{query}'."
        )


class ScopeMemory:
    """Stored edits and their scope embeddings; a
    :class:`~lm_edit.core.prompts.PromptHook`."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        anatomy: ModelAnatomy,
        classifier: ScopeClassifier,
        layer: int,
        threshold: float,
        template: str,
        featurize: Callable[[list[str]], torch.Tensor] | None = None,
    ) -> None:
        check_template(template)
        template = resolve_template(template)
        self.model = model
        self.tokenizer = tokenizer
        self.anatomy = anatomy
        self.classifier = classifier
        self.layer = layer
        self.threshold = threshold
        self.template = template
        self.featurize = featurize or (
            lambda texts: text_features(model, tokenizer, anatomy, layer, texts)
        )
        self.entries: list[EditRequest] = []
        self._embeddings: dict[str, torch.Tensor] = {}

    def embed(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), dim) scope embeddings, computed once per distinct text."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._embeddings))
        if missing:
            features = self.featurize(missing).to(next(self.classifier.parameters()).device)
            with torch.no_grad():
                embedded = self.classifier(features)
            self._embeddings.update(zip(missing, embedded, strict=True))
        return torch.stack([self._embeddings[t] for t in texts])

    def add(self, requests: list[EditRequest]) -> list[EditRequest]:
        """Store ``requests``; return what was added (for :meth:`remove`)."""
        self.embed([r.prompt for r in requests])
        added = list(requests)
        self.entries.extend(added)
        return added

    def remove(self, entries: list[EditRequest]) -> None:
        """Forget ``entries`` (the undo of :meth:`add`)."""
        gone = {id(entry) for entry in entries}
        self.entries = [entry for entry in self.entries if id(entry) not in gone]

    def route(self, contexts: list[str]) -> list[tuple[EditRequest | None, float]]:
        """For each context, the edit in whose scope it falls (``None`` when none does)
        and the highest similarity."""
        if not self.entries:
            return [(None, 0.0) for _ in contexts]
        edits = self.embed([entry.prompt for entry in self.entries])
        with torch.no_grad():
            similarity = self.classifier.log_similarity(self.embed(contexts), edits).exp()
        best, index = similarity.max(-1)
        return [
            (self.entries[int(i)] if float(s) > self.threshold else None, float(s))
            for s, i in zip(best, index, strict=True)
        ]

    def prefix(self, entry: EditRequest) -> str:
        """What the counterfactual model reads before a request in ``entry``'s scope."""
        head = self.template[: -len(QUERY)]
        return head.format(prompt=entry.prompt, target=entry.target_new)

    def rewrite(self, context: str, budget: int | None) -> tuple[str, int]:
        """``context`` with the edit it falls within before it, and the tokens added;
        unchanged when it is out of scope or the edit would not fit ``budget``."""
        entry, _ = self.route([context])[0]
        if entry is None:
            return context, 0
        prefix = self.prefix(entry)
        added = len(self.tokenizer(prefix, add_special_tokens=False)["input_ids"])
        if budget is not None:
            own = len(self.tokenizer(context, add_special_tokens=False)["input_ids"])
            if own + added > budget:
                logger.warning(
                    "SERAC: a request in the scope of edit %r is answered by the unedited "
                    "model: with the edit before it, it would need %d tokens of the %d the "
                    "model takes.",
                    entry.case_id,
                    own + added,
                    budget,
                )
                return context, 0
        return prefix + context, added
