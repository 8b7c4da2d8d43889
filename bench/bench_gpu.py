"""The locate family at 7B scale on one GPU, in one run (a Llama-2-7B-shaped model with
random weights in bfloat16; no download needed):

1. key statistics: tokens per second of lm-edit's statistics pass (second moments of the
   MLP keys of every edited layer) against a plain forward pass over the same text, and
   their ratio;
2. seconds per edit: ROME (batch 1), MEMIT (batches 1, 100 and 1,000), AlphaEdit
   (batch 100) and UltraEdit (one turn of 100, after a warm-up turn), timed after one
   untimed warm-up edit, with key statistics precomputed (their cost is item 1), end to
   end otherwise (v* optimisation, keys, solves, writes).

    python bench/bench_gpu.py [--size 7b|tiny] [--device cuda] [--dtype bfloat16]
        [--memit-batches 1,100] [--stats-passages 256] [--out figures.json]

``--size tiny --device cpu --dtype float32`` runs the same code in seconds (a smoke run of
the script, not a figure). MEMIT at batch 1,000 (``--memit-batches 1,100,1000``) spends
most of its time in 1,000 v* optimisations; the default leaves it out to fit a short
device lease. The reference implementations are not timed here (EasyEdit's needs its own
statistics download). The edit requests are synthetic (``"<subject> is located in"``
-> a random word), which is fine for timing: the cost does not depend on the words. The
script prints one JSON object and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from lm_edit.data.requests import EditRequest
from lm_edit.editors import hyperparameter_names
from lm_edit.stream import EditStream

WORDS = [
    *("river", "stone", "castle", "garden", "market", "window", "harbor", "forest"),
    *("valley", "bridge", "temple", "library", "station", "island", "desert"),
    *("mountain", "village", "palace", "tower", "meadow"),
]

SIZES = {
    "7b": dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=512,
    ),
}


def tokenizer_for(vocab_size: int):
    """A word-level tokenizer trained in memory (no download), at most ``vocab_size`` ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<s>"])
    corpus = [" ".join(WORDS) + " is located in the city of subject"] * 4
    corpus += [f"subject{i}" for i in range(min(vocab_size - 64, 2000))]
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<s>"
    )


def random_model(size: str, device: str, dtype: torch.dtype):
    """A Llama with random weights of the chosen size, on ``device`` in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SIZES[size], max_position_embeddings=2048)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval()


def requests(n: int, offset: int = 0) -> list[EditRequest]:
    """``n`` synthetic requests with distinct subjects."""
    rng = random.Random(offset)
    return [
        EditRequest(
            f"s{offset + i}",
            f"subject{offset + i} is located in the city of",
            f"subject{offset + i}",
            rng.choice(WORDS),
        )
        for i in range(n)
    ]


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def statistics_figures(model, tokenizer, device: str, passages: int) -> dict[str, float]:
    """Tokens/s of the statistics pass and of a plain forward pass over the same text."""
    from lm_edit.core.anatomy import resolve_anatomy
    from lm_edit.core.stats import StatsSpec, collect

    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(128)) for _ in range(passages)]
    spec = StatsSpec(source="file", samples=passages, max_length=128, batch_size=16)
    anatomy = resolve_anatomy(model)
    layers = [4, 5, 6, 7, 8] if model.config.num_hidden_layers > 8 else [1, 2]
    tokens = sum(min(len(tokenizer(t)["input_ids"]), 128) for t in texts)
    synchronise(device)
    start = time.perf_counter()
    collect(model, tokenizer, anatomy, layers, texts, spec)
    synchronise(device)
    stats_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(texts), spec.batch_size):
            batch = tokenizer(
                texts[i : i + spec.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=128,
            ).to(device)
            model(**batch)
    synchronise(device)
    forward_seconds = time.perf_counter() - start
    return {
        "stats_tokens_per_s": tokens / stats_seconds,
        "forward_tokens_per_s": tokens / forward_seconds,
        "stats_over_forward_time": stats_seconds / forward_seconds,
    }


def seconds_per_edit(model, tokenizer, editor: str, batch: int, device: str) -> float:
    """Median-free single measurement: one warm-up batch (untimed), then one timed batch;
    the stream is undone afterwards so every measurement starts from the same weights."""
    statistics = {"stats_source": "model", "stats_model_samples": 16}
    takes = hyperparameter_names(editor)
    settings = {k: v for k, v in statistics.items() if k in takes}
    stream = EditStream.create(model, tokenizer, editor, **settings)
    warm_up = batch if editor == "ultraedit" else 1  # its statistics need a full turn
    stream.apply(requests(warm_up, offset=10_000), batch_size=warm_up, progress=False)
    synchronise(device)
    start = time.perf_counter()
    stream.apply(requests(batch, offset=batch), batch_size=batch, progress=False)
    synchronise(device)
    seconds = (time.perf_counter() - start) / batch
    for record in reversed(stream.records):
        record.undo(model)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--memit-batches", default="1,100")
    parser.add_argument("--stats-passages", type=int, default=256)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    model = random_model(args.size, args.device, dtype)
    tokenizer = tokenizer_for(model.config.vocab_size)
    figures: dict[str, object] = {
        "size": args.size,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "dtype": args.dtype,
    }
    measurements = [("rome_s_per_edit", "rome", 1)]
    batches = [int(b) for b in args.memit_batches.split(",")]
    measurements += [(f"memit_batch{b}_s_per_edit", "memit", b) for b in batches]
    alpha = min(100, max(batches))
    measurements.append((f"alphaedit_batch{alpha}_s_per_edit", "alphaedit", alpha))
    measurements.append((f"ultraedit_turn{alpha}_s_per_edit", "ultraedit", alpha))

    def record(key: str, value: object) -> None:
        """Print and keep each figure as it comes, so a run stopped early keeps the rest."""
        figures[key] = value
        print(f"{key}: {value}", flush=True)
        if args.out:
            args.out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")

    for key, value in statistics_figures(
        model, tokenizer, args.device, args.stats_passages
    ).items():
        record(key, value)
    for key, editor, batch in measurements:
        record(key, seconds_per_edit(model, tokenizer, editor, batch, args.device))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
