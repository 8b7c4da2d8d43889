"""A fine-tuning baseline on the held-out cases of an ``lm-edit train`` run.

Reads the run folder's ``training.json`` (its model, data split and validation case ids),
edits each validation case alone with an ``edited-hf`` editor (default ``ft-m``) on the
unedited model, scores it as the run's validation scores a learned editor (target-token
accuracy after the prompt and after each rephrase; unchanged argmax on the case's
unrelated answer), undoes the edit, and prints the two side by side.

Usage: ``python bench/baseline_on_validation.py RUN_FOLDER --model smollm2-135m
--train_data FILE [--editor ft-m] [--cases N] [--threads N] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from lm_edit.data.loading import load_edit_data  # noqa: E402
from lm_edit.editors.learned.command import load_model  # noqa: E402
from lm_edit.editors.learned.factors import rows_logits, target_rows  # noqa: E402
from lm_edit.editors.learned.training import split_cases, validation_cases  # noqa: E402
from lm_edit.editors.learned.validation import same_argmax, token_accuracy  # noqa: E402
from lm_edit.stream import EditStream  # noqa: E402


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def score_baseline(model, tokenizer, editor: str, cases) -> dict:
    """Edit success, generality and locality of ``editor`` over ``cases``, each alone."""
    scores: dict[str, list[float]] = {"edit_success": [], "generality": [], "locality": []}
    seconds = 0.0
    for case in cases:
        request = case.request
        asked = [request.prompt, *request.rephrases]
        rows = target_rows(tokenizer, [(p, request.target_new) for p in asked])
        unrelated = target_rows(tokenizer, [case.unrelated])
        with torch.no_grad():
            before = rows_logits(model, unrelated)
        stream = EditStream.create(model, tokenizer, editor, seed=0)
        start = time.perf_counter()
        stream.apply([request], batch_size=1, progress=False)
        seconds += time.perf_counter() - start
        with torch.no_grad():
            edited = rows_logits(model, rows)
            after = rows_logits(model, unrelated)
        stream.undo()
        scores["edit_success"].append(token_accuracy(edited[0], rows.spans[0]))
        for row in range(1, len(asked)):
            scores["generality"].append(token_accuracy(edited[row], rows.spans[row]))
        scores["locality"].append(same_argmax(before[0], after[0], unrelated.spans[0]))
    out = {"cases": len(cases), **{k: _mean(v) for k, v in scores.items()}}
    out["edit_seconds_mean"] = round(seconds / max(1, len(cases)), 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a folder lm-edit train wrote")
    parser.add_argument("--model", required=True, help="pretrained= of the run")
    parser.add_argument("--train_data", required=True, help="--train_data of the run")
    parser.add_argument("--editor", default="ft-m")
    parser.add_argument("--cases", type=int, help="only the first N validation cases")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = json.loads((args.run / "training.json").read_text())
    report = json.loads((args.run / "validation.json").read_text())
    settings = run["settings"]
    data = load_edit_data(args.train_data)
    training, held_out = split_cases(data.requests, settings["val_cases"], settings["seed"])
    cases = validation_cases(held_out, training)
    if [c.request.case_id for c in cases] != run["validation_case_ids"]:
        raise SystemExit("the data's split does not give the run's validation cases")
    cases = cases[: args.cases] if args.cases else cases
    model, tokenizer = load_model({"pretrained": args.model})
    baseline = score_baseline(model, tokenizer, args.editor, cases)
    learned = report["final"]
    kind = run["kind"].split()[-1]
    print("| editor | cases | edit success | generality | locality |")
    print("|---|---|---|---|---|")
    for name, row in ((f"{kind} (validation.json)", learned), (args.editor, baseline)):
        print(
            f"| {name} | {row['cases']} | {row['edit_success']} | {row['generality']} | "
            f"{row['locality']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"learned": learned, "baseline": baseline}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
