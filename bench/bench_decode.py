"""Greedy decoding on CPU: transformers' default dynamic key/value cache against a static
one, at the batch sizes `make capability` used before and uses now, in one run.

The dynamic cache concatenates every layer's keys and values at each step, so a step
copies the whole cache; a static cache is allocated once and written in place. Prompts
are random token ids of one length (the timing does not depend on their text); every
sequence generates exactly ``--new-tokens`` tokens, so no batch stops early. Prints the
prefill time, milliseconds per decoding step and per generated token (prefill excluded),
the ratio of that per-token cost against the first configuration and the whole call; the
greedy tokens of the two cache kinds are compared at the same batch size.

    python bench/bench_decode.py [--context 1000] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM

from lm_edit.offline_model import converted_model_dir

CONFIGS = [("dynamic", 4), ("static", 4), ("dynamic", 16), ("static", 16)]


def generate(model, ids: torch.Tensor, cache: str, new_tokens: int) -> tuple[float, torch.Tensor]:
    """Seconds for one greedy generate call of exactly ``new_tokens`` tokens, and its output."""
    kwargs = {"cache_implementation": "static"} if cache == "static" else {}
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
            **kwargs,
        )
    return time.perf_counter() - start, out


def main() -> None:
    """Time every configuration and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=1000, help="prompt length in tokens")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per prompt")
    args = parser.parse_args()
    model = AutoModelForCausalLM.from_pretrained(converted_model_dir(), dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(
        100, 20000, (max(b for _, b in CONFIGS), args.context), generator=generator
    )
    generate(model, prompts[:1, :32], "dynamic", 2)
    print(
        f"threads {torch.get_num_threads()}, context {args.context}, {args.new_tokens} new tokens"
    )
    header = ("cache", "batch", "prefill s", "ms/step", "ms/token", "ratio", "call s")
    print(" ".join(f"{name:>9}" for name in header))
    baseline = None
    outputs: dict[tuple[str, int], torch.Tensor] = {}
    for cache, batch in CONFIGS:
        ids = prompts[:batch]
        prefill, _ = generate(model, ids, cache, 1)
        total, outputs[cache, batch] = generate(model, ids, cache, args.new_tokens)
        per_step = (total - prefill) / (args.new_tokens - 1)
        per_token = per_step / batch
        baseline = baseline or per_token
        print(
            f"{cache:>9} {batch:9d} {prefill:9.1f} {per_step * 1000:9.0f} "
            f"{per_token * 1000:9.1f} {baseline / per_token:8.2f}x {total:9.1f}"
        )
    for batch in sorted({b for _, b in CONFIGS}):
        same = torch.equal(outputs["dynamic", batch], outputs["static", batch])
        print(f"batch {batch}: static and dynamic greedy tokens identical: {same}")


if __name__ == "__main__":
    main()
