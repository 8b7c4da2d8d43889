"""ROME on SmolLM2-135M-Instruct: seconds per edit, peak memory, and key-statistics
throughput beside a plain forward pass over the same tokens, all in one run.

    python bench/bench_rome.py [--edits 3] [--passages 32]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lm_edit.core.anatomy import resolve_anatomy
from lm_edit.core.stats import StatsSpec, collect, sample_model_texts
from lm_edit.core.tokens import pad_batch
from lm_edit.data.loading import load_edit_requests, select_requests
from lm_edit.offline_model import converted_model_dir
from lm_edit.stream import EditStream


def forward_throughput(model, tokenizer, texts: list[str], spec: StatsSpec) -> tuple[float, int]:
    """Seconds and token count of plain full forward passes over ``texts``."""
    tokens, start = 0, time.perf_counter()
    for i in range(0, len(texts), spec.batch_size):
        encoded = [
            tokenizer(t)["input_ids"][: spec.max_length] for t in texts[i : i + spec.batch_size]
        ]
        batch = pad_batch(encoded)
        with torch.no_grad():
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        tokens += int(batch.attention_mask.sum())
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--passages", type=int, default=32)
    args = parser.parse_args()
    path = converted_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    anatomy = resolve_anatomy(model)
    print(
        f"machine: {torch.get_num_threads()} torch threads, device cpu, torch {torch.__version__}"
    )

    spec = StatsSpec(source="model", model_samples=args.passages, max_length=128)
    texts = sample_model_texts(model, tokenizer, spec)
    plain_s, tokens = forward_throughput(model, tokenizer, texts, spec)
    start = time.perf_counter()
    collect(model, tokenizer, anatomy, [5], texts, spec)
    stats_one = time.perf_counter() - start
    start = time.perf_counter()
    collect(model, tokenizer, anatomy, list(range(0, 30, 3)), texts, spec)
    stats_ten = time.perf_counter() - start
    print(f"plain forward (30 layers):        {tokens / plain_s:8.0f} tokens/s ({tokens} tokens)")
    print(
        f"statistics, layer 5 (stops early): {tokens / stats_one:8.0f} tokens/s  "
        f"ratio vs forward {plain_s / stats_one:.2f}x"
    )
    print(
        f"statistics, 10 layers in one pass: {tokens / stats_ten:8.0f} tokens/s  "
        f"ratio vs forward {plain_s / stats_ten:.2f}x"
    )

    requests = select_requests(load_edit_requests("demo"), args.edits, 0)
    stream = EditStream.create(model, tokenizer, "rome")
    stream.editor.prepare(model, tokenizer)
    records = stream.apply(requests, progress=False)
    seconds = [r.seconds for r in records]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"ROME: {statistics.median(seconds):.1f} s/edit median over {len(seconds)} edits "
        f"({', '.join(f'{s:.1f}' for s in seconds)}); peak RSS {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
