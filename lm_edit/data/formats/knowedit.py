"""KnowEdit (``zjunlp/KnowEdit``): its ZsRE/Wiki files and WikiBio."""

from __future__ import annotations

from typing import Any

from lm_edit.data.records import Format, Record


def from_knowedit(rec: Record) -> dict[str, Any]:
    return {
        "prompt": rec.text("prompt"),
        "subject": rec.text("subject"),
        "target_new": rec.text("target_new"),
        "target_true": rec.truth("ground_truth"),
        "rephrases": rec.texts("rephrase_prompt"),
        "locality": tuple(rec.grouped_probes("locality")),
        "portability": tuple(rec.grouped_probes("portability")),
    }


def from_wikibio(rec: Record) -> dict[str, Any]:
    return {
        "prompt": rec.text("text"),
        "subject": rec.text("concept"),
        "target_new": rec.text("labels"),
        "locality": tuple(rec.grouped_probes("locality")),
    }


KNOWEDIT = Format(
    "knowedit",
    "KnowEdit",
    frozenset(
        {"prompt", "subject", "target_new", "ground_truth", "rephrase_prompt"}
        | {"locality", "portability"}
    ),
    from_knowedit,
)

WIKIBIO = Format(
    "wikibio",
    "KnowEdit WikiBio",
    frozenset({"text", "labels", "concept", "locality"}),
    from_wikibio,
)
