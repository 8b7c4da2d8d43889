"""Individual scores: each edit scored right after its own batch was applied.

"Sequential" scores (every edit scored after the last one, what the tasks measure) and
"individual" scores (each edit scored right after it was applied) answer different
questions; "Navigating the Dual Facets" (Lin et al., 2024) reports both. ``edited-hf``
calls :func:`score_individual` after every batch; it scores the batch's reliability and
generality probes with the live model through HFLM's own ``loglikelihood`` and
``generate_until``, by the same rules as the tasks (:mod:`lm_edit.evaluation.metrics`), and
stores the results in the session, where the tasks read them (``*_individual``).
Cost per batch: one loglikelihood request per answer token and one greedy generation
per probe, only as long as exact match needs (see :func:`_answer_budget`).
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.instance import Instance

from lm_edit.data.requests import EditRequest
from lm_edit.evaluation.answers import exact_match
from lm_edit.evaluation.probes import NEW, TRUE, ProbeItem, case_probes
from lm_edit.evaluation.teacher_forcing import forced_score, forced_steps, prefers

GEN_KWARGS: dict[str, Any] = {"until": ["\n"], "max_gen_toks": 16, "do_sample": False}
SCORED_KINDS = ("reliability", "generality")


def _forced(lm, items: list[ProbeItem]) -> list[dict[str, float]]:
    plans = []
    for item in items:
        slots = [slot for slot in (NEW, TRUE) if slot in item.targets]
        plans.append(
            {
                slot: forced_steps(lm.tokenizer, item.prompt, " " + item.targets[slot][0].strip())
                for slot in slots
            }
        )
    args = [(s.context, s.continuation) for plan in plans for steps in plan.values() for s in steps]
    instances = [Instance("loglikelihood", {}, arg, i) for i, arg in enumerate(args)]
    results = iter(lm.loglikelihood(instances, disable_tqdm=True))
    scores = []
    for plan in plans:
        got = {
            slot: forced_score(steps, [next(results) for _ in steps])
            for slot, steps in plan.items()
        }
        out = {"tf": got[NEW].token_accuracy, "tf_em": got[NEW].exact}
        if TRUE in got:
            out["prob"] = prefers(got[NEW], got[TRUE])
        scores.append(out)
    return scores


def _answer_budget(lm, item: ProbeItem) -> int:
    """Tokens enough to judge exact match: the longest answer plus one (greedy decoding
    makes these the first tokens of the task's longer generation, and one token past the
    answer shows whether a word ends there)."""
    longest = max(len(lm.tok_encode(" " + a.strip())) for a in item.targets[NEW])
    return min(GEN_KWARGS["max_gen_toks"], longest + 1)


def _generated(lm, items: list[ProbeItem]) -> list[float]:
    instances = [
        Instance(
            "generate_until",
            {},
            (item.prompt, {**GEN_KWARGS, "max_gen_toks": _answer_budget(lm, item)}),
            i,
        )
        for i, item in enumerate(items)
    ]
    outputs = lm.generate_until(instances, disable_tqdm=True)
    return [exact_match(out, item.targets[NEW]) for out, item in zip(outputs, items, strict=True)]


def score_individual(lm, requests: list[EditRequest]) -> dict[str, dict[str, dict[str, float]]]:
    """``case_id -> "kind/index" -> {tf, tf_em, prob, gen}`` for ``requests``, scored
    with ``lm`` (an HFLM) as it is now."""
    items = [item for r in requests for item in case_probes(r) if item.kind in SCORED_KINDS]
    if not items:
        return {}
    forced = _forced(lm, items)
    generated = _generated(lm, items)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for item, tf, gen in zip(items, forced, generated, strict=True):
        out.setdefault(item.case_id, {})[item.key] = {**tf, "gen": gen}
    return out
