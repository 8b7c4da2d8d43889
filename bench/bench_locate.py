"""The locate-then-edit family on SmolLM2-135M-Instruct, in one run:

1. key statistics for all of MEMIT's layers in one forward pass versus one pass per
   layer (seconds, tokens/s, ratio);
2. seconds per edit for each editor at each batch size, split into the v* optimisation
   (the same per-edit cost for every editor sharing a value configuration) and the rest
   (keys, residuals, solves, weight updates), which is what the editors differ in.

    python bench/bench_locate.py [--passages 64] [--editors memit,emmet,alphaedit]
        [--batch-sizes 1,10,100] [--data <counterfact json>]

The rest is timed with v* taken from the value cache (filled first, untimed except for
``--value-samples`` edits whose optimisation is timed), so batch size 100 does not cost
100 optimisations per editor. ``--no-cache`` times everything end to end instead.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lm_edit.core.anatomy import resolve_anatomy
from lm_edit.core.stats import StatsSpec, collect, load_texts, model_fingerprint
from lm_edit.data.loading import load_edit_requests, select_requests
from lm_edit.editors import resolve_editor
from lm_edit.editors.locate.editor import resolve_layers
from lm_edit.editors.locate.values import optimise_value
from lm_edit.offline_model import converted_model_dir
from lm_edit.stream import EditStream


def statistics_passes(model, tokenizer, layers: list[int], passages: int) -> None:
    """Time one pass for all ``layers`` against one pass per layer over the same text."""
    anatomy = resolve_anatomy(model)
    spec = StatsSpec(source="model", model_samples=passages)
    texts = load_texts(model, tokenizer, "model", spec, model_fingerprint(model))
    tokens = sum(min(len(tokenizer(t)["input_ids"]), spec.max_length) for t in texts)
    start = time.perf_counter()
    collect(model, tokenizer, anatomy, layers, texts, spec)
    together = time.perf_counter() - start
    start = time.perf_counter()
    for layer in layers:
        collect(model, tokenizer, anatomy, [layer], texts, spec)
    separate = time.perf_counter() - start
    print(f"key statistics for layers {layers}, {passages} passages, {tokens} tokens:")
    print(f"  one pass for all layers: {together:7.1f} s  {tokens / together:7.0f} tokens/s")
    print(
        f"  one pass per layer:      {separate:7.1f} s  "
        f"{tokens * len(layers) / separate:7.0f} tokens/s (layer-tokens)"
    )
    print(f"  ratio: one pass is {separate / together:.2f}x faster")


def edit_seconds(model, tokenizer, editors, batch_sizes, requests, cache: bool, samples: int):
    """Seconds per edit per editor and batch size (see the module docstring)."""
    print("seconds per edit (v* = target-value optimisation, rest = keys + solves + updates):")
    for editor in editors:
        overrides = {"cache_values": cache}
        spec = resolve_editor(editor, model, overrides)
        layers = resolve_layers(spec.config, resolve_anatomy(model).num_layers(model))
        stream = EditStream.create(model, tokenizer, editor, **overrides)
        stream.editor.prepare(model, tokenizer)
        value_seconds = None
        if cache:
            largest = requests[: max(batch_sizes)]
            editor_object = stream.editor
            start = time.perf_counter()
            for request in largest[:samples]:
                optimise_value(
                    model,
                    tokenizer,
                    editor_object.anatomy,
                    layers[-1],
                    request,
                    editor_object.templates,
                    spec.config,
                )
            value_seconds = (time.perf_counter() - start) / samples
            editor_object.target_values(model, tokenizer, layers[-1], largest)
        for size in batch_sizes:
            start = time.perf_counter()
            stream.apply(requests[:size], batch_size=size, progress=False)
            elapsed = time.perf_counter() - start
            stream.undo()
            line = f"  {editor:10s} batch {size:4d}: {elapsed / size:8.2f} s/edit"
            if value_seconds is not None:
                line = (
                    f"  {editor:10s} batch {size:4d}: rest {elapsed / size:7.3f} s/edit"
                    f"  + v* {value_seconds:6.2f} s/edit"
                    f"  = {value_seconds + elapsed / size:6.2f} s/edit"
                )
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--editors", default="rome,r-rome,memit,emmet,alphaedit,pmet")
    parser.add_argument("--batch-sizes", default="1,10,100")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--value-samples", type=int, default=3)
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    path = converted_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    print(f"machine: {torch.get_num_threads()} torch threads, cpu, torch {torch.__version__}")
    memit = resolve_editor("memit", model)
    layers = resolve_layers(memit.config, resolve_anatomy(model).num_layers(model))
    statistics_passes(model, tokenizer, layers, args.passages)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    pool = load_edit_requests(args.data)
    requests = select_requests(pool, min(max(sizes), len(pool)), 0)
    editors = [e for e in args.editors.split(",") if e]
    edit_seconds(model, tokenizer, editors, sizes, requests, not args.no_cache, args.value_samples)


if __name__ == "__main__":
    main()
