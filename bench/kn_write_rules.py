"""KN's write rules on SmolLM2-135M-Instruct, one ZsRE edit at a time (docs/kn-on-smollm2.md).

For each case and each rule (``value_sign`` fixed or activation, ``write_scale`` 8 or 1),
``editor=kn`` edits the unedited model, the script scores the new target after the edit
prompt (summed log-probability and teacher-forced token accuracy) and the damage (mean
change of the log-probability of the case's locality answer and of the other cases' true
answers), then undoes the edit. Needs ``$LM_EDIT_DATA_DIR`` holding
``portability/zsre_mend_edit.json``; one thread by default, so the figures repeat.

Usage: ``python bench/kn_write_rules.py [--cases ID,...] [--threads N] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from lm_edit.core.tokens import prompt_and_target  # noqa: E402
from lm_edit.data.loading import load_edit_requests  # noqa: E402
from lm_edit.stream import EditStream  # noqa: E402

CASES = (
    "zsre_mend_edit-724,zsre_mend_edit-25,zsre_mend_edit-4,zsre_mend_edit-595,zsre_mend_edit-337"
)
RULES = {
    "paper": {"value_sign": "fixed", "write_scale": 8.0},
    "paper, signed": {"value_sign": "activation", "write_scale": 8.0},
    "unit": {"value_sign": "fixed", "write_scale": 1.0},
    "unit, signed": {"value_sign": "activation", "write_scale": 1.0},
}


def score(model, tokenizer, prompt: str, answer: str) -> tuple[float, float]:
    """(summed log-probability, token accuracy) of ``answer`` after ``prompt``."""
    whole, start = prompt_and_target(tokenizer, prompt, " " + answer.strip())
    with torch.no_grad():
        log_probs = model(input_ids=torch.tensor([whole])).logits[0].log_softmax(-1)
    pairs = list(zip(range(start, len(whole)), whole[start:], strict=True))
    total = sum(float(log_probs[p - 1, t]) for p, t in pairs)
    hits = sum(int(log_probs[p - 1].argmax()) == t for p, t in pairs)
    return total, hits / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=CASES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_edit.offline_model import resolve_pretrained

    path = resolve_pretrained("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    by_id = {r.case_id: r for r in load_edit_requests("zsre")}
    requests = [by_id[c] for c in args.cases.split(",")]
    rows = []
    for request in requests:
        others = [r for r in requests if r is not request]
        probes = [(p.prompt, p.answer) for p in request.locality[:3]]
        facts = [(r.prompt, r.target_true) for r in others]
        before = score(model, tokenizer, request.prompt, request.target_new)
        probes_before = [score(model, tokenizer, *p)[0] for p in probes]
        facts_before = [score(model, tokenizer, *f)[0] for f in facts]
        for rule, settings in RULES.items():
            stream = EditStream.create(model, tokenizer, "kn", seed=0, **settings)
            record = stream.apply([request], progress=False)[0]
            after = score(model, tokenizer, request.prompt, request.target_new)
            probes_after = [score(model, tokenizer, *p)[0] for p in probes]
            facts_after = [score(model, tokenizer, *f)[0] for f in facts]
            stream.undo()
            row = {
                "case": request.case_id,
                "rule": rule,
                "neurons": record.details["neurons"][request.case_id],
                "target_log_prob": [round(before[0], 2), round(after[0], 2)],
                "target_token_accuracy": [before[1], after[1]],
                "locality_damage": round(
                    sum(a - b for a, b in zip(probes_after, probes_before, strict=True))
                    / max(1, len(probes)),
                    2,
                ),
                "other_facts_damage": round(
                    sum(a - b for a, b in zip(facts_after, facts_before, strict=True))
                    / max(1, len(facts)),
                    2,
                ),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
