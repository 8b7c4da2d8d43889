"""Validation of a SERAC scope classifier on held-out edits, all stored in one memory as
the editor stores a stream's edits: the scope scores (the share of rephrases routed to
their own edit, and of locality prompts routed to none), and the served model's edit
success, generality and locality, scored as MEND's validation scores them (target-token
accuracy on the prompt and the rephrases; unchanged argmax on the unrelated answer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.core.training import Span
from lm_edit.editors.learned.factors import rows_logits, target_rows
from lm_edit.editors.learned.objective import EditCase
from lm_edit.editors.learned.validation import token_accuracy
from lm_edit.editors.serac.classifier import ScopeClassifier
from lm_edit.editors.serac.memory import ScopeMemory


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def validate_scope(
    model: nn.Module,
    tokenizer: Any,
    anatomy: ModelAnatomy,
    classifier: ScopeClassifier,
    layer: int,
    cases: list[EditCase],
    *,
    threshold: float = 0.5,
    template: str = "reference",
    featurize: Callable[[list[str]], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """The validation scores of ``classifier`` over ``cases`` (classifier in eval mode;
    ``featurize`` gives the texts' features, computed afresh when not given)."""
    was_training = classifier.training
    classifier.eval()
    memory = ScopeMemory(
        model, tokenizer, anatomy, classifier, layer, threshold, template, featurize
    )
    memory.add([case.request for case in cases])
    scores: dict[str, list[float]] = {
        k: [] for k in ("in_scope", "out_of_scope", "edit_success", "generality", "locality")
    }
    try:
        for case in cases:
            request = case.request
            routes = memory.route(list(request.rephrases) + [case.unrelated[0]])
            for edit, _ in routes[:-1]:
                scores["in_scope"].append(float(edit is request))
            scores["out_of_scope"].append(float(routes[-1][0] is None))
            asked = [request.prompt, *request.rephrases]
            served = [memory.rewrite(prompt, None)[0] for prompt in asked]
            rows = target_rows(tokenizer, [(p, request.target_new) for p in served])
            unrelated_prompt, unrelated_answer = case.unrelated
            pair = [(unrelated_prompt, unrelated_answer)]
            pair.append((memory.rewrite(unrelated_prompt, None)[0], unrelated_answer))
            unrelated = target_rows(tokenizer, pair)
            with torch.no_grad():
                edited = rows_logits(model, rows)
                before_after = rows_logits(model, unrelated)
            scores["edit_success"].append(token_accuracy(edited[0], rows.spans[0]))
            for row in range(1, len(asked)):
                scores["generality"].append(token_accuracy(edited[row], rows.spans[row]))
            scores["locality"].append(
                _locality(before_after, unrelated.spans[0], unrelated.spans[1])
            )
    finally:
        classifier.train(was_training)
    return {"cases": len(cases), **{k: _mean(v) for k, v in scores.items()}}


def _locality(log_probs: torch.Tensor, before: Span, after: Span) -> float:
    """Share of the answer's positions whose argmax is the same without (row 0) and with
    (row 1) the counterfactual prefix; the answer's positions shift by the prefix."""
    n = min(len(before[0]), len(after[0]))
    first = log_probs[0][torch.tensor(before[0][:n])].argmax(-1)
    second = log_probs[1][torch.tensor(after[0][:n])].argmax(-1)
    return float((first == second).float().mean())
