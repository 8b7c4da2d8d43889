"""ROME quality on real CounterFact cases: ES/PS/NS before and after a sequential stream.

    python bench/rome_quality.py --data ../shared/data/counterfact/counterfact-edit.json \\
        --n-edits 10 --consistent-keys false

Prints one JSON line per setting; probabilities are sums of target-token log-probs with
the target preceded by a space (the same protocol as counterfact_edit's *_prob metrics).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lm_edit.datasets import load_edit_requests, select_requests
from lm_edit.offline_model import converted_model_dir
from lm_edit.stream import EditStream


def log_prob(model, tokenizer, prompt: str, target: str) -> float:
    """Sum of log-probs of `` target`` after ``prompt``."""
    ids = tokenizer(prompt + " " + target)["input_ids"]
    start = len(tokenizer(prompt)["input_ids"])
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits.log_softmax(-1)
    return sum(logits[0, i - 1, ids[i]].item() for i in range(start, len(ids)))


def scores(model, tokenizer, requests) -> dict[str, float]:
    """ES, PS, NS as probability comparisons."""
    es, ps, ns = [], [], []
    for r in requests:
        es.append(
            log_prob(model, tokenizer, r.prompt, r.target_new)
            > log_prob(model, tokenizer, r.prompt, r.target_true)
        )
        ps += [
            log_prob(model, tokenizer, q, r.target_new)
            > log_prob(model, tokenizer, q, r.target_true)
            for q in r.rephrases
        ]
        ns += [
            log_prob(model, tokenizer, p.prompt, p.answer)
            > log_prob(model, tokenizer, p.prompt, r.target_new)
            for p in r.locality
        ]
    return {k: round(sum(v) / len(v), 3) for k, v in (("ES", es), ("PS", ps), ("NS", ns)) if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="demo")
    parser.add_argument("--n-edits", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--editor", default="rome")
    parser.add_argument("--set", nargs="*", default=[], help="hyperparameter overrides k=v")
    args = parser.parse_args()
    path = converted_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    requests = select_requests(load_edit_requests(args.data), args.n_edits, args.seed)
    overrides = dict(item.split("=", 1) for item in args.set)
    before = scores(model, tokenizer, requests)
    stream = EditStream.create(model, tokenizer, args.editor, seed=args.seed, **overrides)
    start = time.perf_counter()
    stream.apply(requests, progress=False)
    seconds = [round(r.seconds, 1) for r in stream.records]
    after = scores(model, tokenizer, requests)
    print(
        json.dumps(
            {
                "editor": args.editor,
                "overrides": overrides,
                "n": len(requests),
                "unedited": before,
                "edited": after,
                "seconds_per_edit": seconds,
                "wall": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
