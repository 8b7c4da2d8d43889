"""EasyEdit's flat format (``prompt``, ``subject``, ``target_new``, ``*_prompt`` fields),
for CounterFact and ZsRE alike."""

from __future__ import annotations

from typing import Any

from lm_edit.data.records import Format, Record

FLAT_KEYS = frozenset(
    {
        "prompt",
        "subject",
        "target_new",
        "ground_truth",
        "rephrase_prompt",
        "locality_prompt",
        "locality_ground_truth",
        "portability_prompt",
        "portability_ground_truth",
    }
)


def from_easyedit_flat(rec: Record) -> dict[str, Any]:
    loc_prompts = rec.get("locality_prompt")
    nq = isinstance(loc_prompts, str) and loc_prompts.startswith("nq question:")
    return {
        "prompt": rec.text("prompt"),
        "subject": rec.text("subject"),
        "target_new": rec.text("target_new"),
        "target_true": rec.truth("ground_truth"),
        "rephrases": rec.texts("rephrase_prompt"),
        "locality": tuple(
            rec.paired_probes(
                "locality",
                loc_prompts,
                rec.get("locality_ground_truth"),
                "NQ" if nq else "neighborhood",
            )
        ),
        "portability": tuple(
            rec.paired_probes(
                "portability",
                rec.get("portability_prompt"),
                rec.get("portability_ground_truth"),
                "portability",
            )
        ),
    }


COUNTERFACT_FLAT = Format(
    "easyedit_flat", "CounterFact (EasyEdit flat format)", FLAT_KEYS, from_easyedit_flat
)

ZSRE_FLAT = Format("easyedit_flat", "ZsRE (EasyEdit flat format)", FLAT_KEYS, from_easyedit_flat)
