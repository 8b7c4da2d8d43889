"""KN attribution with and without the prompt's key-value cache, on SmolLM2-135M-Instruct.

For each ZsRE case (the first cases of the sweeps' edit order), the knowledge neurons of
the fact the model holds are located twice, interleaved: over the whole prompt at every
integrated-gradients point (``cached=False``, how the points were computed before) and
with the last token run against the prompt's cache (``cached=True``, the default). Prints
the seconds of each, their ratio, the largest relative difference of the attributions and
whether the located neurons are the same. Needs ``$LM_EDIT_DATA_DIR`` holding
``portability/zsre_mend_edit.json``.

Usage: ``python bench/kn_attribution.py [--cases ID,...] [--threads N]``
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from lm_edit.core.anatomy import resolve_anatomy  # noqa: E402
from lm_edit.data.loading import load_edit_requests  # noqa: E402
from lm_edit.editors.neurons.attribution import (  # noqa: E402
    AttributionSettings,
    answer_queries,
    coarse_neurons,
    prompt_attribution,
)

CASES = "zsre_mend_edit-724,zsre_mend_edit-25,zsre_mend_edit-4"


def timed_attribution(model, anatomy, queries, settings) -> tuple[float, torch.Tensor]:
    """(seconds, attribution) of one prompt."""
    start = time.perf_counter()
    scores = prompt_attribution(model, anatomy, queries, settings)
    return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=CASES)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_edit.offline_model import resolve_pretrained

    path = resolve_pretrained("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    model.requires_grad_(False)
    anatomy = resolve_anatomy(model)
    layers = tuple(range(anatomy.num_layers(model)))
    cached = AttributionSettings(layers, 20, 20, 0.2, 0.4)  # kn.yaml's defaults
    whole = dataclasses.replace(cached, cached=False)
    by_id = {r.case_id: r for r in load_edit_requests("zsre")}
    print(
        "| case | answer tokens | prompt tokens | whole prompt s | cached s | ratio "
        "| max relative difference | same neurons |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    totals = [0.0, 0.0]
    for index, case in enumerate(args.cases.split(",")):
        request = by_id[case]
        queries = answer_queries(tokenizer, request.prompt, request.target_true)
        order = [whole, cached] if index % 2 == 0 else [cached, whole]
        got = {id(s): timed_attribution(model, anatomy, queries, s) for s in order}
        (t_whole, s_whole), (t_cached, s_cached) = got[id(whole)], got[id(cached)]
        totals[0] += t_whole
        totals[1] += t_cached
        difference = float((s_cached - s_whole).abs().max() / s_whole.abs().max())
        same = coarse_neurons(s_whole, list(layers), 0.2) == coarse_neurons(
            s_cached, list(layers), 0.2
        )
        print(
            f"| {case} | {len(queries)} | {len(queries[0].ids)} | {t_whole:.1f} | "
            f"{t_cached:.1f} | {t_whole / t_cached:.1f} | {difference:.1e} | {same} |"
        )
    print(
        f"total: whole prompt {totals[0]:.1f} s, cached {totals[1]:.1f} s, "
        f"ratio {totals[0] / totals[1]:.1f}"
    )


if __name__ == "__main__":
    main()
