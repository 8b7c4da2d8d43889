"""lm-edit's own JSON schema (``EditRequest.to_dict``)."""

from __future__ import annotations

from typing import Any

from lm_edit.data.records import Format, Record


def from_own(rec: Record) -> dict[str, Any]:
    rec.extra.update(rec.mapping("extra"))
    return {
        "prompt": rec.text("prompt"),
        "subject": rec.text("subject"),
        "target_new": rec.text("target_new"),
        "target_true": rec.truth("target_true"),
        "rephrases": rec.texts("rephrases"),
        "locality": tuple(rec.listed_probes("locality")),
        "portability": tuple(rec.listed_probes("portability")),
    }


OWN = Format(
    "own",
    "lm_edit JSON schema",
    frozenset(
        {"prompt", "subject", "target_new", "target_true", "rephrases"}
        | {"locality", "portability", "extra"}
    ),
    from_own,
)
