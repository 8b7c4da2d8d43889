"""CounterFact in ROME's format (``requested_rewrite`` an object)."""

from __future__ import annotations

from typing import Any

from lm_edit.data.records import Format, Record, kept, one_hop


def from_counterfact_rome(rec: Record) -> dict[str, Any]:
    rewrite = rec.mapping("requested_rewrite")
    template = rec.text("requested_rewrite.prompt", rewrite.get("prompt"))
    if template.count("{}") != 1:
        raise rec.error(f"'requested_rewrite.prompt' must contain '{{}}' once, got {template!r}.")
    subject = rec.text("requested_rewrite.subject", rewrite.get("subject"))
    target_new = rec.mapping("requested_rewrite.target_new", rewrite.get("target_new"))
    target_true = rec.mapping("requested_rewrite.target_true", rewrite.get("target_true"))
    truth = rec.truth("requested_rewrite.target_true.str", target_true.get("str"))
    if rewrite.get("relation_id") is not None:
        rec.extra["relation_id"] = rewrite["relation_id"]
    if target_new.get("id") is not None:
        rec.extra["target_new_id"] = target_new["id"]
    target = rec.text("requested_rewrite.target_new.str", target_new.get("str"))
    probes = one_hop(rec)
    if rec.get("alternative_subject") is not None:
        alias = rec.text("alternative_subject")
        probes.append(
            rec.probe(
                "alternative_subject", template.replace("{}", alias), target, "subject_replace"
            )
        )
    neighbours = rec.texts("neighborhood_prompts")
    return {
        "prompt": template.replace("{}", subject),
        "subject": subject,
        "target_new": target,
        "target_true": truth,
        "rephrases": rec.texts("paraphrase_prompts"),
        "locality": tuple(
            kept(rec.probe("neighborhood_prompts", p, truth, "neighborhood") for p in neighbours)
        ),
        "portability": tuple(kept(probes)),
    }


COUNTERFACT_ROME = Format(
    "counterfact_rome",
    "CounterFact (ROME format)",
    frozenset(
        {"requested_rewrite", "paraphrase_prompts", "neighborhood_prompts"}
        | {"portability", "alternative_subject"}
    ),
    from_counterfact_rome,
)
