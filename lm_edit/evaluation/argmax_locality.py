"""EasyEdit's locality: does the edit keep the model's argmax where the gold locality
answer is teacher-forced?

EasyEdit feeds ``prompt + " " + gold`` to the model before and after editing, takes the
argmax token at every answer position, and reports the share of positions where the two
agree. Here the unedited model's argmax at each position is its one-token greedy
continuation of the prompt plus the gold answer's earlier tokens (taken through HFLM's
generation before any edit, with no stop string but the end of text, so that a line break
is an argmax like any other token); after editing, a loglikelihood request for that token at the
same context reports, through its greedy flag, whether the argmax is still the same.

Positions are the gold answer's token boundaries that survive lm-eval's tokenisation (the
contexts of :func:`~lm_edit.evaluation.teacher_forcing.forced_steps`); a position whose
unedited argmax is the end of text (generation returns nothing), or whose token merges
with the context when re-encoded, cannot be asked and is left out (counted in the log).
"""

from __future__ import annotations

import logging
from typing import Any

from lm_eval.api.instance import Instance

from lm_edit.data.requests import EditRequest
from lm_edit.evaluation.teacher_forcing import forced_steps

logger = logging.getLogger(__name__)

Key = tuple[str, int]


def _contexts(lm: Any, requests: list[EditRequest]) -> list[tuple[Key, str]]:
    """(probe key, context) for every usable position of every gold locality answer."""
    out: list[tuple[Key, str]] = []
    for request in requests:
        for index, probe in enumerate(request.locality):
            answer = " " + probe.answer.strip()
            if not answer.strip():
                continue
            try:
                steps = forced_steps(lm.tokenizer, probe.prompt, answer)
            except ValueError:
                continue
            out += [((request.case_id, index), step.context) for step in steps]
    return out


def _one_token(lm: Any, context: str, token: str) -> bool:
    """Whether ``token`` stays exactly one token after ``context`` under lm-eval's split."""
    if not token:
        return False
    whole = lm.tok_encode(context + token)
    return len(whole) - len(lm.tok_encode(context)) == 1


def unedited_argmax_steps(lm: Any, requests: list[EditRequest]) -> dict[Key, list[list[str]]]:
    """For each locality probe, ``[context, argmax token]`` pairs of the current (unedited)
    model at the gold answer's positions."""
    contexts = _contexts(lm, requests)
    instances = [
        Instance(
            "generate_until",
            {},
            (context, {"until": [], "max_gen_toks": 1, "do_sample": False}),
            position,
        )
        for position, (_, context) in enumerate(contexts)
    ]
    tokens = lm.generate_until(instances, disable_tqdm=True) if instances else []
    steps: dict[Key, list[list[str]]] = {}
    dropped = 0
    for (key, context), token in zip(contexts, tokens, strict=True):
        if _one_token(lm, context, token):
            steps.setdefault(key, []).append([context, token])
        else:
            dropped += 1
    if dropped:
        logger.info(
            "locality_tf_same_argmax: %d of %d answer positions left out (the unedited argmax "
            "ends the text or merges with the context)",
            dropped,
            len(contexts),
        )
    return steps
