"""ZsRE in MEND's format, with the portability probes of the EasyEdit portability files."""

from __future__ import annotations

from typing import Any

from lm_edit.data.records import Format, Record, kept, one_hop
from lm_edit.data.requests import Probe


def zsre_portability(rec: Record) -> list[Probe]:
    """One-hop, subject-replace (``alter_subject_question``, answered by the new target)
    and inverse-relation (``inverse question``, answered by the subject) probes of the
    EasyEdit portability files in MEND format."""
    probes = one_hop(rec)
    if rec.get("alter_subject_question") is not None:
        probes.append(
            rec.probe(
                "alter_subject_question",
                rec.get("alter_subject_question"),
                rec.get("alt"),
                "subject_replace",
            )
        )
    if rec.get("inverse question") is not None:
        probes.append(
            rec.probe(
                "inverse question",
                rec.get("inverse question"),
                rec.get("subject"),
                "inverse_relation",
            )
        )
    return kept(probes)


def from_zsre_mend(rec: Record) -> dict[str, Any]:
    return {
        "prompt": rec.text("src"),
        "subject": rec.text("subject"),
        "target_new": rec.text("alt"),
        "target_true": rec.truth("answers"),
        "rephrases": rec.texts("rephrase"),
        "locality": tuple(rec.paired_probes("loc", rec.get("loc"), rec.get("loc_ans"), "NQ")),
        "portability": tuple(zsre_portability(rec)),
    }


ZSRE_MEND = Format(
    "zsre_mend",
    "ZsRE (MEND format)",
    frozenset(
        {"src", "alt", "answers", "rephrase", "loc", "loc_ans", "subject", "portability"}
        | {"alter_subject_question", "inverse question"}
    ),
    from_zsre_mend,
)
