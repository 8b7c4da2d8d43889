"""EasyEdit's (and ROME's) metric code against lm-edit's tasks, on the same edited weights.

One model is loaded through ``edited-hf`` (``EditedLM``), a few cases are edited with
lm-edit's ROME, and the same model object is then scored twice:

* by lm-edit's ``counterfact_edit`` and ``zsre_edit`` tasks (``lm_eval.simple_evaluate``);
* by the reference metric functions, called on that model and its tokenizer with the
  same prompts and answers: EasyEdit's ``compute_edit_quality`` (``rewrite_acc``,
  ``rephrase_acc``, ``locality`` and ``portability`` outputs, with the pre-edit locality
  argmaxes taken on the unedited model before the first edit and compared the way
  EasyEdit's editor does) and ROME's ``test_batch_prediction`` for ES/PS/NS and their
  magnitudes (EasyEdit's own copy of it was removed from ``easyeditor/evaluate`` in 2023;
  ROME's ``experiments/py/eval_utils_counterfact.py`` is the original).

The reference code is not part of lm-edit. Extract it outside the repository::

    git --git-dir=<EasyEdit mirror> archive HEAD easyeditor | tar -x -C /work/ref/easyedit
    git --git-dir=<rome mirror> archive HEAD | tar -x -C /work/ref/rome

and run (CPU, a few minutes per ROME edit on a loaded machine)::

    LM_EDIT_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 \\
      python bench/compare_easyedit_metrics.py \\
      --reference-dir /work/ref/easyedit --rome-dir /work/ref/rome

EasyEdit's package ``__init__`` imports every editor and trainer (and optional packages
such as ``openai``); the script imports only ``easyeditor/evaluate/evaluate.py`` and
``evaluate_utils.py`` (with the real ``easyeditor/util``), stubs the modules those two
import but the metric functions used here never call, and prints the list. ROME's
module is imported from a temporary copy with one textual patch (``.to("cuda")`` ->
the model's device), printed at start. docs/metrics.md ("Against EasyEdit's metric
code") explains every difference the table shows.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TASKS = ["counterfact_edit", "zsre_edit"]
GROUPS = {
    "counterfact": "counterfact/counterfact-edit.json",
    "zsre": "portability/zsre_mend_edit.json",
}
# (file in a temporary copy of kmeng01/rome, text, replacement, expected count)
ROME_PATCHES = [("experiments/py/eval_utils_counterfact.py", '.to("cuda")', ".to(model.device)", 1)]
# (reference metric, lm-edit task, lm-edit metric): the rows of the table
ROWS = [
    ("rewrite_acc", "zsre_edit", "reliability_tf"),
    ("rephrase_acc", "zsre_edit", "generality_tf"),
    ("locality (neighborhood)", "zsre_edit", "locality_tf_same_argmax"),
    ("portability one_hop_acc", "zsre_edit", "portability_tf"),
    ("ES (ROME)", "counterfact_edit", "es_prob"),
    ("PS (ROME)", "counterfact_edit", "ps_prob"),
    ("NS (ROME)", "counterfact_edit", "ns_prob"),
    ("EM (ROME)", "counterfact_edit", "em_prob"),
    ("PM (ROME)", "counterfact_edit", "pm_prob"),
    ("NM (ROME)", "counterfact_edit", "nm_prob"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-dir", default=os.environ.get("LM_EDIT_EASYEDIT_DIR"))
    default_rome = os.environ.get("LM_EDIT_REFERENCE_DIR")
    parser.add_argument("--rome-dir", default=default_rome and str(Path(default_rome) / "rome"))
    parser.add_argument("--pretrained", default="smollm2-135m")
    parser.add_argument("--editor", default="rome")
    parser.add_argument("--groups", default="counterfact,zsre", help="counterfact and/or zsre")
    parser.add_argument("--n-edits", type=int, default=5, help="cases edited per group")
    parser.add_argument("--edit-seed", type=int, default=0)
    parser.add_argument(
        "--case-ids",
        help="edit these cases (comma-separated lm-edit case ids, e.g. zsre_mend_edit-8) "
        "instead of --n-edits seeded ones; --groups must then name their one group",
    )
    parser.add_argument("--data-dir", default=os.environ.get("LM_EDIT_DATA_DIR"))
    parser.add_argument("--json", help="also write the per-case figures to this file")
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    args = parser.parse_args()
    problems = []
    easyedit = Path(args.reference_dir) if args.reference_dir else None
    if easyedit is None or not (easyedit / "easyeditor/evaluate/evaluate.py").is_file():
        problems.append(
            "EasyEdit: extract zjunlp/EasyEdit outside the repository (for example "
            "`git --git-dir=<mirror> archive HEAD easyeditor | tar -x -C /work/ref/easyedit`) "
            "and pass --reference-dir /work/ref/easyedit (or set LM_EDIT_EASYEDIT_DIR)."
        )
    rome = Path(args.rome_dir) if args.rome_dir else None
    if rome is None or not (rome / "experiments/py/eval_utils_counterfact.py").is_file():
        problems.append(
            "ROME (ES/PS/NS): extract kmeng01/rome outside the repository and pass "
            "--rome-dir <checkout> (or set LM_EDIT_REFERENCE_DIR to the folder holding rome/)."
        )
    data = Path(args.data_dir) if args.data_dir else ROOT.parent / "shared" / "data"
    missing = [g for g in args.groups.split(",") if not (data / GROUPS[g]).is_file()]
    if missing:
        problems.append(
            f"data: {', '.join(GROUPS[g] for g in missing)} not under {data}; pass --data-dir "
            "or set LM_EDIT_DATA_DIR."
        )
    if problems:
        sys.exit("compare_easyedit_metrics: missing inputs.\n  " + "\n  ".join(problems))
    args.data_dir = data.resolve()
    return args


# ---------------------------------------------------------------- reference imports


def _shell(name: str, path: Path | None = None) -> types.ModuleType:
    """An empty module (a package whose ``__init__`` is skipped when ``path`` is given)."""
    module = types.ModuleType(name)
    if path is not None:
        module.__path__ = [str(path)]
    sys.modules[name] = module
    return module


def import_easyedit(root: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """EasyEdit's ``evaluate.evaluate`` and ``evaluate.evaluate_utils`` modules, imported
    without the package ``__init__`` files (they import every editor and trainer)."""
    package = root / "easyeditor"
    stubs = []
    _shell("easyeditor", package)
    _shell("easyeditor.evaluate", package / "evaluate")
    _shell("easyeditor.models", package / "models")
    _shell("easyeditor.models.melo", package / "models" / "melo")
    melo = _shell("easyeditor.models.melo.melo")
    melo.LORA = type("LORA", (), {})  # only an isinstance check in compute_edit_quality
    stubs.append("easyeditor.models.melo.melo (LORA placeholder: omegaconf, peft_egg)")
    _shell("easyeditor.trainer")  # `from ..trainer import *`: SERAC, only in serac fluency
    stubs.append("easyeditor.trainer (empty: MEND/SERAC/BLIP-2 trainers)")
    if importlib.util.find_spec("openai") is None:
        openai = _shell("openai")
        openai.OpenAI = type("OpenAI", (), {})  # only the LLM-judge protocol calls it
        stubs.append("openai (not installed; OpenAI placeholder for the LLM judge)")
    print("EasyEdit imported from", package)
    print("  real: easyeditor/evaluate/{evaluate,evaluate_utils,metric_meta}.py, easyeditor/util")
    for stub in stubs:
        print("  stub:", stub)
    evaluate = importlib.import_module("easyeditor.evaluate.evaluate")
    utils = importlib.import_module("easyeditor.evaluate.evaluate_utils")
    return evaluate, utils


def import_rome(checkout: Path) -> types.ModuleType:
    """ROME's ``eval_utils_counterfact`` from a patched temporary copy of ``checkout``."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        for name in ("dsets", "util", "experiments"):
            shutil.copytree(checkout / name, copy / name)
        shutil.copy(checkout / "globals.yml", copy / "globals.yml")
        print("ROME imported from a copy of", checkout, "with the textual patches:")
        for file, old, new, count in ROME_PATCHES:
            path = copy / file
            text = path.read_text()
            if text.count(old) != count:
                sys.exit(f"patch {old!r}: expected {count}x in {file}, got {text.count(old)}")
            path.write_text(text.replace(old, new))
            print(f"  {file}: {old} -> {new} ({count}x)")
        cwd = Path.cwd()
        os.chdir(copy)  # util/globals.py reads ./globals.yml at import
        sys.path.insert(0, str(copy))
        try:
            return importlib.import_module("experiments.py.eval_utils_counterfact")
        finally:
            os.chdir(cwd)
            sys.path.remove(str(copy))


# ---------------------------------------------------------------- the reference side


class HParams:
    """The hyperparameters EasyEdit's metric functions read (``alg_name`` decides the
    GRACE branch, ``max_length`` the truncation; no chat template, teacher forcing)."""

    alg_name = "ROME"
    max_length = 40
    device = "cpu"


def easyedit_record(request) -> dict[str, Any]:
    """The EasyEdit request (``_prepare_requests`` layout) for an lm-edit request."""
    record: dict[str, Any] = {
        "prompt": request.prompt,
        "target_new": request.target_new,
        "ground_truth": request.target_true,
        "locality": {},
        "portability": {},
    }
    if request.rephrases:
        record["rephrase_prompt"] = request.rephrases[0]
    if request.locality:
        record["locality"]["neighborhood"] = {
            "prompt": [p.prompt for p in request.locality],
            "ground_truth": [p.answer for p in request.locality],
        }
    hops = [p for p in request.portability if p.category == "one_hop"]
    if hops:
        record["portability"]["one_hop"] = {
            "prompt": [p.prompt for p in hops],
            "ground_truth": [p.answer for p in hops],
        }
    return record


def easyedit_scores(evaluate, model, tok, request, name: str) -> dict[str, Any]:
    """``compute_edit_quality`` on one case (EasyEdit's ``post`` dict)."""
    record = easyedit_record(request)
    return evaluate.compute_edit_quality(model, name, HParams(), tok, record, "cpu")


def locality_acc(pre: list, post: list) -> list[float]:
    """EasyEdit's locality from pre- and post-edit ``neighborhood_output`` (its editor's
    ``finalize_locality_metrics``: per probe, the share of equal argmax tokens)."""
    return [float(np.mean(np.equal(a, b))) for a, b in zip(pre, post, strict=True)]


def rome_scores(rome, model, tok, request) -> dict[str, float]:
    """ES/PS/NS and EM/PM/NM of one case with ROME's ``test_batch_prediction`` and its
    ``summarize`` formulas (NS compares the locality answer with the new object)."""
    out: dict[str, float] = {}
    new, true = request.target_new, request.target_true
    for short, prompts in (("ES", [request.prompt]), ("PS", list(request.rephrases))):
        if not prompts or not true:
            continue
        probs = rome.test_batch_prediction(model, tok, prompts, new, true)
        out[short] = float(np.mean([x["target_true"] > x["target_new"] for x in probs]))
        gaps = [np.exp(-x["target_new"]) - np.exp(-x["target_true"]) for x in probs]
        out[short[0] + "M"] = float(np.mean(gaps))
    success, gaps = [], []
    for probe in request.locality:  # one call per probe: the locality answers differ
        (x,) = rome.test_batch_prediction(model, tok, [probe.prompt], new, probe.answer)
        success.append(x["target_true"] < x["target_new"])
        gaps.append(np.exp(-x["target_true"]) - np.exp(-x["target_new"]))
    if success:
        out["NS"], out["NM"] = float(np.mean(success)), float(np.mean(gaps))
    return out


def reference_row(ee: dict[str, Any], loc: list[float] | None, rome: dict[str, float]):
    """The case's reference values, keyed like ``ROWS``."""
    row = {
        "rewrite_acc": float(np.mean(ee["rewrite_acc"])),
        "rephrase_acc": float(np.mean(ee["rephrase_acc"])) if "rephrase_acc" in ee else None,
        "locality (neighborhood)": float(np.mean(loc)) if loc else None,
    }
    hop = ee.get("portability", {}).get("one_hop_acc")
    row["portability one_hop_acc"] = float(np.mean(hop)) if hop else None
    for name in ("ES", "PS", "NS", "EM", "PM", "NM"):
        row[f"{name} (ROME)"] = rome.get(name)
    return row


# ---------------------------------------------------------------- the lm-edit side


def lm_edit_per_case(samples: dict[str, list[dict]]) -> dict[str, dict[tuple[str, str], float]]:
    """Per case, the mean of each (task, metric) over the case's probes."""
    values: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    metrics = {(task, metric) for _, task, metric in ROWS}
    for task, rows in samples.items():
        for sample in rows:
            case = sample["doc"]["case_id"]
            if sample["doc"]["probe"] == "portability" and sample["doc"]["category"] != "one_hop":
                continue  # the reference row is EasyEdit's one-hop portability
            for t, metric in metrics:
                if t == task and metric in sample:
                    values[case][(task, metric)].append(float(sample[metric]))
    return {
        case: {key: float(np.mean(v)) for key, v in got.items()} for case, got in values.items()
    }


def chosen_cases(path: Path, case_ids: list[str], folder: Path) -> tuple[Path, dict[str, str]]:
    """A copy of ``path`` (same file name, in ``folder``) holding only the records of
    ``case_ids``, and a map from the copy's case ids to the original ones."""
    from lm_edit.data.loading import load_edit_requests

    index = {r.case_id: i for i, r in enumerate(load_edit_requests(str(path)))}
    unknown = [c for c in case_ids if c not in index]
    if unknown:
        sys.exit(f"compare_easyedit_metrics: no case {', '.join(unknown)} in {path}")
    records = json.loads(path.read_text())
    copy = folder / path.name
    copy.write_text(json.dumps([records[index[c]] for c in case_ids]))
    renamed = {r.case_id: c for r, c in zip(load_edit_requests(str(copy)), case_ids, strict=True)}
    return copy, renamed


def run_group(args, group: str, evaluate, rome) -> list[dict[str, Any]]:
    """Edit ``args.n_edits`` cases of ``group`` and score them both ways."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from lm_edit.evaluation.model import EditedLM
    from lm_edit.paths import tasks_dir

    edit_data, n_edits, names = args.data_dir / GROUPS[group], args.n_edits, {}
    tmp = tempfile.TemporaryDirectory()
    if args.case_ids:
        edit_data, names = chosen_cases(edit_data, args.case_ids.split(","), Path(tmp.name))
        n_edits = len(names)
    lm = EditedLM(
        pretrained=args.pretrained,
        device="cpu",
        batch_size=1,
        editor=args.editor,
        n_edits=n_edits,
        edit_data=str(edit_data),
        edit_seed=args.edit_seed,
        individual_scores=False,
        defer_edits=True,
    )
    tmp.cleanup()
    model, tok, name = lm.model, lm.tokenizer, args.pretrained
    requests = list(lm.planned_requests)
    shown = [names.get(r.case_id, r.case_id) for r in requests]
    print(f"\n[{group}] model dtype {model.dtype}, cases {shown}")
    with torch.no_grad():
        pre = {r.case_id: easyedit_scores(evaluate, model, tok, r, name) for r in requests}
    lm.edit_up_to(len(requests))
    manager = TaskManager(include_path=str(tasks_dir()))
    out = simple_evaluate(model=lm, tasks=TASKS, task_manager=manager, log_samples=True)
    ours = lm_edit_per_case(out["samples"])
    cases = []
    with torch.no_grad():
        for request in requests:
            post = easyedit_scores(evaluate, model, tok, request, name)
            loc = None
            if "neighborhood_output" in post["locality"]:
                loc = locality_acc(
                    pre[request.case_id]["locality"]["neighborhood_output"],
                    post["locality"]["neighborhood_output"],
                )
            reference = reference_row(post, loc, rome_scores(rome, model, tok, request))
            lm_edit = {ref: ours.get(request.case_id, {}).get((t, m)) for ref, t, m in ROWS}
            case = {"group": group, "case_id": names.get(request.case_id, request.case_id)}
            cases.append(case | {"ref": reference, "ours": lm_edit})
    del lm, model
    return cases


# ---------------------------------------------------------------- the table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_table(cases: list[dict[str, Any]]) -> None:
    """Per group: each metric's reference and lm-edit value per case and their means with
    the |difference|; then every case whose values differ."""
    by_group: dict[str, list[dict]] = defaultdict(list)
    for case in cases:
        by_group[case["group"]].append(case)
    for group, rows in by_group.items():
        print(f"\n== {group}: reference (EasyEdit / ROME) vs lm-edit on the same edited model ==")
        print("per case: reference/lm-edit; mean over the cases both sides score")
        ids = [str(c["case_id"]) for c in rows]
        print(f"{'reference':24} {'lm-edit':24} " + " ".join(f"{i[-13:]:>13}" for i in ids), end="")
        print(f" {'ref mean':>9} {'ours mean':>9} {'|diff|':>8}")
        differing = []
        for ref_name, _, metric in ROWS:
            cells, refs, ours = [], [], []
            for case in rows:
                a, b = case["ref"][ref_name], case["ours"][ref_name]
                cells.append(f"{_fmt(a)}/{_fmt(b)}")
                if a is not None and b is not None:
                    refs.append(a)
                    ours.append(b)
                    if abs(a - b) > 1e-6:
                        differing.append((ref_name, metric, case["case_id"], a, b))
            if not refs:
                continue
            ma, mb = float(np.mean(refs)), float(np.mean(ours))
            print(f"{ref_name:24} {metric:24} " + " ".join(f"{c:>13}" for c in cells), end="")
            print(f" {ma:9.4f} {mb:9.4f} {abs(ma - mb):8.2g}")
        print(f"per-case differences above 1e-6 ({group}):" + ("" if differing else " none"))
        for ref_name, metric, case_id, a, b in differing:
            gap = abs(a - b)
            print(f"  case {case_id}: {ref_name} {a:.6f} vs {metric} {b:.6f} (|diff| {gap:.2g})")


def print_markdown(cases: list[dict[str, Any]]) -> None:
    """The table of :func:`print_table` in Markdown (for docs/metrics.md)."""
    by_group: dict[str, list[dict]] = defaultdict(list)
    for case in cases:
        by_group[case["group"]].append(case)
    for group, rows in by_group.items():
        ids = [str(c["case_id"]) for c in rows]
        print(f"\n{group}:\n")
        print("| reference | lm-edit | " + " | ".join(ids) + " | mean | \\|diff\\| |")
        print("|---|---|" + "---|" * len(ids) + "---|---|")
        for ref_name, _, metric in ROWS:
            pairs = [(c["ref"][ref_name], c["ours"][ref_name]) for c in rows]
            both = [(a, b) for a, b in pairs if a is not None and b is not None]
            if not both:
                continue
            ma, mb = (float(np.mean(v)) for v in zip(*both, strict=True))
            cells = " | ".join(f"{_fmt(a)} / {_fmt(b)}" for a, b in pairs)
            means = f"{ma:.4f} / {mb:.4f} | {abs(ma - mb):.1g}"
            print(f"| {ref_name} | `{metric}` | {cells} | {means} |")


def main() -> None:
    args = parse_args()
    evaluate, _ = import_easyedit(Path(args.reference_dir))
    cases = []
    rome = import_rome(Path(args.rome_dir))
    for group in args.groups.split(","):
        cases += run_group(args, group, evaluate, rome)
    print_table(cases)
    if args.markdown:
        print_markdown(cases)
    if args.json:
        Path(args.json).write_text(json.dumps(cases, indent=1, default=str))


if __name__ == "__main__":
    main()
