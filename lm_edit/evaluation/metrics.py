"""Per-doc metrics of the editing tasks. Every name carries its protocol:

* ``_tf``: teacher-forced token accuracy (EasyEdit's ``rewrite_acc`` & co.): the share of
  answer tokens that are the model's argmax with the answer's earlier tokens fed in;
* ``_tf_em``: teacher-forced exact match: every answer token is the argmax;
* ``_prob``: probability comparison P(new) > P(true) by mean per-token log-probability
  (ROME/CounterFact ES, PS, NS, as ROME's evaluation compares mean NLLs); ``_prob_sum``:
  the same by summed log-probability (the whole answer's probability);
* ``_gen``: greedy generation, exact match after normalisation (the generation begins
  with the answer); ``_gen_contains``: the answer occurs in the generation;
* locality ``_unedited``: agreement with the unedited model's own greedy answer;
  ``locality_tf_same_argmax``: EasyEdit's locality, the share of gold-answer positions
  (teacher-forced) where the argmax is the unedited model's;
  ``_gold``: accuracy against the dataset's answer;
* ``_individual``: the same metric taken right after the case's own edit batch (the
  plain name is taken after the last edit: the sequential score).

``docs/metrics.md`` gives every formula and the paper it follows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from lm_edit.evaluation.answers import agrees, contains, exact_match
from lm_edit.evaluation.docs import NO_PROBES
from lm_edit.evaluation.probes import ARGMAX, GOLD, NEW, TRUE, UNEDITED
from lm_edit.evaluation.teacher_forcing import (
    ForcedScore,
    Step,
    forced_score,
    prefers,
    prefers_in_sum,
    probability_gap,
)

Result = tuple[float, bool]
_SHORT = {"reliability": "es", "generality": "ps"}


def forced_scores(doc: dict[str, Any], results: list[Result]) -> dict[str, ForcedScore]:
    """Each slot's teacher-forced score from the doc's per-token requests."""
    steps: dict[str, list[Step]] = defaultdict(list)
    got: dict[str, list[Result]] = defaultdict(list)
    rows = zip(doc["requests"], doc["step_slots"], doc["step_tokens"], results, strict=True)
    for (context, continuation), slot, tokens, result in rows:
        steps[slot].append(Step(context, continuation, tokens))
        got[slot].append(result)
    return {slot: forced_score(steps[slot], got[slot]) for slot in steps}


def individual_metrics(doc: dict[str, Any], names: dict[str, str]) -> dict[str, float]:
    """``names`` maps a stored individual score to the metric it is reported as."""
    stored = json.loads(doc.get("individual") or "{}")
    return {metric: float(stored[key]) for key, metric in names.items() if key in stored}


def forced_metrics(doc: dict[str, Any], results: list[Result]) -> dict[str, float]:
    """Teacher-forced metrics of one probe (all editing datasets)."""
    if doc["probe"] == NO_PROBES:
        return {}
    got = forced_scores(doc, results)
    kind, slug = doc["probe"], doc.get("breakdown") or ""
    if kind in ("reliability", "generality"):
        out = {f"{kind}_tf": got[NEW].token_accuracy, f"{kind}_tf_em": got[NEW].exact}
        if TRUE in got:
            out[f"{kind}_prob"] = prefers(got[NEW], got[TRUE])
        names = {name: f"{kind}_{name}_individual" for name in ("tf", "tf_em", "prob")}
        return out | individual_metrics(doc, names)
    if kind == "locality":
        out = {
            "locality_tf_gold": got[GOLD].token_accuracy,
            "locality_tf_em_gold": got[GOLD].exact,
        }
        if UNEDITED in got:
            out["locality_tf_unedited"] = got[UNEDITED].token_accuracy
            out["locality_tf_em_unedited"] = got[UNEDITED].exact
            if slug:
                out[f"locality_{slug}_tf_unedited"] = got[UNEDITED].token_accuracy
        if ARGMAX in got:
            out["locality_tf_same_argmax"] = got[ARGMAX].token_accuracy
        return out
    out = {"portability_tf": got[GOLD].token_accuracy, "portability_tf_em": got[GOLD].exact}
    if slug:
        out[f"portability_{slug}_tf"] = got[GOLD].token_accuracy
    return out


def _comparison(short: str, first: ForcedScore, second: ForcedScore) -> dict[str, Any]:
    """ROME's items for one prompt: success (``es_prob``), magnitude (``em_prob``), the
    summed-log-probability success (``es_prob_sum``) and the S item."""
    success = prefers(first, second)
    return {
        f"{short}_prob": success,
        f"{short[0]}m_prob": probability_gap(first, second),
        f"{short}_prob_sum": prefers_in_sum(first, second),
        "s_prob": (short, success),
    }


def counterfact_metrics(doc: dict[str, Any], results: list[Result]) -> dict[str, Any]:
    """The teacher-forced metrics plus CounterFact's ES/PS/NS, EM/PM/NM and S items. A case
    without a true object (insertion-style data) gets no ES/PS/EM/PM items: they compare
    with the true object (the task logs such cases when it builds its docs)."""
    out: dict[str, Any] = forced_metrics(doc, results)
    if doc["probe"] == NO_PROBES:
        return out
    got = forced_scores(doc, results)
    kind = doc["probe"]
    if kind in _SHORT:
        if TRUE not in got:
            return out
        short = _SHORT[kind]
        out |= _comparison(short, got[NEW], got[TRUE])
        return out | individual_metrics(doc, {"prob": f"{short}_prob_individual"})
    if kind == "locality":
        out |= _comparison("ns", got[GOLD], got[NEW])
    return out


def harmonic_score(items: list[tuple[str, float]]) -> float:
    """S: harmonic mean of the mean ES, PS and NS (0 when any of them is 0)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for name, value in items:
        groups[name].append(value)
    means = [sum(v) / len(v) for v in groups.values()]
    if not means or min(means) == 0:
        return 0.0
    return len(means) / sum(1 / m for m in means)


def generation_metrics(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Generation-protocol metrics of one probe: ``results`` holds the greedy generation."""
    if doc["probe"] == NO_PROBES:
        return {}
    generation = results[0]
    targets = json.loads(doc["targets"])
    kind, slug = doc["probe"], doc.get("breakdown") or ""
    if kind in ("reliability", "generality"):
        out = {
            f"{kind}_gen": exact_match(generation, targets[NEW]),
            f"{kind}_gen_contains": contains(generation, targets[NEW]),
        }
        return out | individual_metrics(doc, {"gen": f"{kind}_gen_individual"})
    if kind == "locality":
        out = {
            "locality_gen_gold": exact_match(generation, targets[GOLD]),
            "locality_gen_gold_contains": contains(generation, targets[GOLD]),
        }
        if UNEDITED in targets:
            out["locality_gen_unedited"] = agrees(generation, targets[UNEDITED][0])
            if slug:
                out[f"locality_{slug}_gen_unedited"] = out["locality_gen_unedited"]
        return out
    out = {
        "portability_gen": exact_match(generation, targets[GOLD]),
        "portability_gen_contains": contains(generation, targets[GOLD]),
    }
    if slug:
        out[f"portability_{slug}_gen"] = out["portability_gen"]
    return out
