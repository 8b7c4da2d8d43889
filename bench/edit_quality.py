"""Edit quality on real CounterFact cases (ES, PS, NS, S) for the locate-then-edit family.

Batch mode: each editor writes ``--batch`` cases in one batch; all are scored after it.
Stream mode: each editor writes ``--stream`` cases in batches of ``--stream-batch``; after
every batch the first batch's ES is measured again (how well early edits survive), and
at the end all cases are scored.

    python bench/edit_quality.py --data ../shared/data/counterfact/counterfact-edit.json \\
        --batch-editors memit,emmet --batch 100 \\
        --stream-editors alphaedit,memit --stream 200 --stream-batch 20 --out results.jsonl

Objects are compared by mean per-token log-probability with the target preceded by a
space (ROME's evaluation and counterfact_edit's *_prob metrics): ES/PS count prompts where
the new object beats the true one, NS neighbourhood prompts where the true object still
wins; S is their harmonic mean. ES_sum/PS_sum/NS_sum/S_sum compare summed log-probabilities
(the *_prob_sum metrics). Target values are cached (``cache_values``), so editors that share a value
configuration compute v* once for the cases they edit on the same weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lm_edit.data.loading import load_edit_requests, select_requests
from lm_edit.data.requests import EditRequest
from lm_edit.offline_model import converted_model_dir
from lm_edit.stream import EditStream


def log_prob(model, tokenizer, prompt: str, target: str, per_token: bool = True) -> float:
    """Log-prob of `` target`` after ``prompt``: per token (mean) or summed."""
    ids = tokenizer(prompt + " " + target)["input_ids"]
    start = len(tokenizer(prompt)["input_ids"])
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits.float().log_softmax(-1)
    total = sum(logits[0, i - 1, ids[i]].item() for i in range(start, len(ids)))
    return total / (len(ids) - start) if per_token else total


def efficacy(model, tokenizer, requests: list[EditRequest], per_token: bool = True) -> float:
    """Share of edit prompts where the new object beats the true one."""
    wins = [
        log_prob(model, tokenizer, r.prompt, r.target_new, per_token)
        > log_prob(model, tokenizer, r.prompt, r.target_true, per_token)
        for r in requests
    ]
    return round(sum(wins) / len(wins), 3)


def _comparisons(model, tokenizer, requests, per_token: bool) -> dict[str, float]:
    ps, ns = [], []
    for r in requests:
        ps += [
            log_prob(model, tokenizer, q, r.target_new, per_token)
            > log_prob(model, tokenizer, q, r.target_true, per_token)
            for q in r.rephrases
        ]
        ns += [
            log_prob(model, tokenizer, p.prompt, p.answer, per_token)
            > log_prob(model, tokenizer, p.prompt, r.target_new, per_token)
            for p in r.locality
        ]
    result = {"ES": efficacy(model, tokenizer, requests, per_token)}
    result.update({k: round(sum(v) / len(v), 3) for k, v in (("PS", ps), ("NS", ns)) if v})
    parts = [result[k] for k in ("ES", "PS", "NS") if k in result]
    result["S"] = round(statistics.harmonic_mean(parts), 3) if all(parts) else 0.0
    return result


def scores(model, tokenizer, requests: list[EditRequest]) -> dict[str, float]:
    """ES, PS, NS and S by mean per-token log-probability, and the same by sums (_sum)."""
    summed = _comparisons(model, tokenizer, requests, per_token=False)
    return {
        **_comparisons(model, tokenizer, requests, per_token=True),
        **{f"{name}_sum": value for name, value in summed.items()},
    }


def run_batch(model, tokenizer, editor, requests, overrides) -> dict:
    """One batch of all ``requests``, scored after it; the model is restored afterwards."""
    stream = EditStream.create(model, tokenizer, editor, **overrides)
    start = time.perf_counter()
    stream.apply(requests, batch_size=len(requests), progress=False)
    wall = time.perf_counter() - start
    result = scores(model, tokenizer, requests)
    stream.undo()
    return {
        "mode": "batch",
        "editor": editor,
        "n": len(requests),
        **result,
        "seconds": round(wall, 1),
    }


def run_streams(model, tokenizer, editors, requests, batch_size, overrides, report) -> None:
    """The same batches for every editor, interleaved batch by batch (each editor on its
    own copy of the model), so an interrupted run still compares them at equal length.
    After every batch the first batch's ES is measured; all scores at the end."""
    models = {editor: copy.deepcopy(model) for editor in editors}
    streams = {e: EditStream.create(models[e], tokenizer, e, **overrides) for e in editors}
    batches = [requests[i : i + batch_size] for i in range(0, len(requests), batch_size)]
    curves: dict[str, list[float]] = {editor: [] for editor in editors}
    seconds = dict.fromkeys(editors, 0.0)
    for index, batch in enumerate(batches, start=1):
        for editor in editors:
            start = time.perf_counter()
            streams[editor].apply(batch, batch_size=batch_size, progress=False)
            seconds[editor] += time.perf_counter() - start
            curves[editor].append(efficacy(models[editor], tokenizer, batches[0]))
            report(
                {
                    "mode": "stream-progress",
                    "editor": editor,
                    "edits": index * batch_size,
                    "first_batch_ES": curves[editor][-1],
                    "seconds": round(seconds[editor], 1),
                }
            )
    for editor in editors:
        edited = scores(models[editor], tokenizer, requests)
        first = scores(models[editor], tokenizer, batches[0])
        report(
            {
                "mode": "stream",
                "editor": editor,
                "n": len(requests),
                "batch_size": batch_size,
                **edited,
                "first_batch": first,
                "first_batch_ES_after_each_batch": curves[editor],
                "seconds": round(seconds[editor], 1),
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-editors", default="")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--stream-editors", default="")
    parser.add_argument("--stream", type=int, default=200)
    parser.add_argument("--stream-batch", type=int, default=20)
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="load, edit and score the model in this dtype (scores use float32 logits)",
    )
    parser.add_argument("--set", nargs="*", default=[], help="hyperparameter overrides k=v")
    parser.add_argument("--out", type=Path, help="append one JSON line per run here")
    args = parser.parse_args()
    path = converted_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).eval()
    overrides = {"cache_values": True, **dict(item.split("=", 1) for item in args.set)}
    pool = load_edit_requests(args.data)
    stream_editors = [e for e in args.stream_editors.split(",") if e]
    needed = max(args.batch, args.stream if stream_editors else 0)
    requests = select_requests(pool, needed, args.seed)

    def report(run: dict) -> None:
        line = json.dumps({"seed": args.seed, "data": args.data, "dtype": args.dtype, **run})
        print(line, flush=True)
        if args.out:
            with args.out.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    report(
        {"mode": "unedited", "editor": "none", "n": needed, **scores(model, tokenizer, requests)}
    )
    if 0 < args.batch < needed:
        first = requests[: args.batch]
        report(
            {
                "mode": "unedited",
                "editor": "none",
                "n": len(first),
                **scores(model, tokenizer, first),
            }
        )
    for editor in filter(None, args.batch_editors.split(",")):
        report(run_batch(model, tokenizer, editor, requests[: args.batch], overrides))
    if stream_editors:
        chosen = requests[: args.stream]
        run_streams(model, tokenizer, stream_editors, chosen, args.stream_batch, overrides, report)


if __name__ == "__main__":
    main()
