"""Edit quality against the number of passages behind the key statistics.

MEMIT writes the same ``--n-edits`` CounterFact cases in one batch with statistics from
the first N passages of one text pool, for each N in ``--samples``; everything but the
statistics is fixed (v* comes from the value cache after the first point).

    python bench/stats_samples_curve.py --data <counterfact json> --n-edits 100 \\
        --samples 8,16,32,64,128,256 [--source model|<.txt/.jsonl file>]

With ``--source model`` (the offline default) the pool is text sampled from the model,
as ``stats_source=model`` does.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from edit_quality import run_batch, scores  # sibling script in bench/
from transformers import AutoModelForCausalLM, AutoTokenizer

from lm_edit.core.stats import StatsSpec, load_texts, model_fingerprint
from lm_edit.data.loading import load_edit_requests, select_requests
from lm_edit.offline_model import converted_model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="demo")
    parser.add_argument("--n-edits", type=int, default=100)
    parser.add_argument("--samples", default="8,16,32,64,128,256")
    parser.add_argument("--source", default="model")
    parser.add_argument("--editor", default="memit")
    args = parser.parse_args()
    path = converted_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    counts = [int(n) for n in args.samples.split(",")]
    spec = StatsSpec(source=args.source, samples=max(counts), model_samples=max(counts))
    texts = load_texts(model, tokenizer, args.source, spec, model_fingerprint(model))
    pool = Path(tempfile.mkdtemp()) / "passages.jsonl"
    pool.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    requests = select_requests(load_edit_requests(args.data), args.n_edits, 0)
    print(json.dumps({"samples": 0, "editor": "none", **scores(model, tokenizer, requests)}))
    for count in counts:
        overrides = {"cache_values": True, "stats_source": str(pool), "stats_samples": count}
        start = time.perf_counter()
        result = run_batch(model, tokenizer, args.editor, requests, overrides)
        tokens = sum(min(len(tokenizer(t)["input_ids"]), spec.max_length) for t in texts[:count])
        result.update(samples=count, tokens=tokens, wall=round(time.perf_counter() - start, 1))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
