"""In-context edits at the seam where lm-eval's requests reach the model.

An editor that edits through a prompt hook (:mod:`lm_edit.core.prompts`, IKE) leaves the
weights alone; ``edited-hf`` passes the context of every log-likelihood and generation
request through the model's prompt hooks here, with a token budget that keeps the
rewritten request inside the model's context, and logs what that costs.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from lm_eval.api.instance import Instance

from lm_edit.core.prompts import prompt_hooks, rewrite_prompt

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PromptCost:
    """Requests rewritten so far and the tokens the hooks added to them."""

    requests: int = 0
    added_tokens: int = 0

    @property
    def mean_added(self) -> float:
        """Mean tokens added per rewritten request."""
        return self.added_tokens / self.requests if self.requests else 0.0


def rewrite_requests(lm: Any, requests: list[Instance], cost: PromptCost) -> list[Instance]:
    """``requests`` with every context rewritten by the model's prompt hooks (the same
    objects when the model has none); ``cost`` accumulates the tokens added."""
    if not prompt_hooks(lm.model) or not requests:
        return requests
    rewritten = []
    added = 0
    for request in requests:
        context, rest = request.args[0], request.args[1:]
        new = rewrite_prompt(lm.model, context, _budget(lm, request))
        added += new.added_tokens
        rewritten.append(dataclasses.replace(request, arguments=(new.text, *rest)))
    cost.requests += len(requests)
    cost.added_tokens += added
    logger.info(
        "In-context edits added %.1f tokens per request to %d %s requests (%.1f over all "
        "%d so far).",
        added / len(requests),
        len(requests),
        requests[0].request_type,
        cost.mean_added,
        cost.requests,
    )
    return rewritten


def _budget(lm: Any, request: Instance) -> int:
    """Tokens the rewritten context may take: the model's length less what follows it
    (the scored continuation, or the generation budget)."""
    if request.request_type == "generate_until":
        kwargs = request.args[1] if len(request.args) > 1 else {}
        following = int(kwargs.get("max_gen_toks", lm.max_gen_toks))
    else:
        following = len(lm.tok_encode(request.args[1], add_special_tokens=False))
    return max(0, lm.max_length - following - 1)


def warn_rolling(lm: Any) -> None:
    """Rolling log-likelihood (perplexity tasks) scores whole documents in windows of
    the model's length and is served without the in-context edits."""
    if prompt_hooks(lm.model):
        logger.warning(
            "loglikelihood_rolling requests (perplexity tasks) are scored without the "
            "in-context edits: documents are windowed to the model's full length."
        )
