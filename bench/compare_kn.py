"""Run lm-edit's knowledge-neurons editor (``editor=kn``) and EasyEdit's KN
(``easyeditor/models/kn`` with its vendored ``knowledge_neurons`` package) side by side on
the tiny random Llama and GPT-2 of the tests, and print how their integrated-gradients
attributions, selected neurons, weight changes and edit success differ.

The reference code is not part of lm-edit. Clone it outside the repository,
``git clone https://github.com/zjunlp/EasyEdit`` (the comparison was made at commit
14cea82), or extract the folder from a bare mirror::

    git --git-dir=<mirror> archive HEAD easyeditor/models/kn | tar -x -C <dir>

and pass the folder that holds ``easyeditor/`` with ``--reference-dir`` (or
``LM_EDIT_REFERENCE_DIR``; a folder with the checkout in ``easyedit/`` is accepted too).
Only ``kn_main.py``, ``kn_hparams.py``, ``__init__.py`` and the four modules of
``knowledge_neurons/knowledge_neurons`` are read: each variant copies them into a package
in a temporary folder and patches them textually (``BASE_PATCHES``: imports of the rest
of EasyEdit, ``einops`` and the device; ``P_GRID`` switches EasyEdit's integration grid
to lm-edit's). Every patch is a ``(file, old, new, count)`` entry, checked to occur exactly
``count`` times and printed at start; the imported modules are forgotten after the run.

Requests: prompts of the tests' corpus after which the model's greedy token is a whole
word (a space-initial token that survives lm-edit's ``" " + answer.strip()``), so that the
fact EasyEdit attributes (``ground_truth``) and the token it erases (the greedy
prediction) are both lm-edit's ``target_true``; the new targets are one-token words. Each
request is edited alone on a fresh copy of the same float32 model. Settings: S1 Llama with
EasyEdit's Llama hparams (``steps: 1, batch_size: 1``), S2 Llama and S3 GPT-2 with its
GPT-2 XL hparams (``steps: 20, batch_size: 20``); always ``adaptive_threshold: 0.2``,
``p: 0.4``, ``refine: false``. Comparisons, each closing one more difference:

- C0 as is: lm-edit with ``kn.yaml``'s defaults against EasyEdit as is.
- C1 options aligned: lm-edit's ``steps``/``steps_per_batch`` set to EasyEdit's and its
  write rule to EasyEdit's for one-token answers (``erase_scale: 2, write_scale: 1,
  embedding: input``).
- C2 C1 + grid: EasyEdit patched to lm-edit's grid ``k/steps`` (``P_GRID``).
- C3 C2 + activation: lm-edit's own attribution code reading EasyEdit's activation (the
  input of the MLP's activation function, i.e. the output of ``gate_proj``/``c_fc``)
  instead of the input of the output projection (no option: a scripted swap).

Per comparison: the largest relative difference of the attributions (``max|a - b| /
max|b|`` over the searched neurons, per request), whether the selected neuron sets are
equal (read from which value vectors changed), the relative difference of the weight
change per edited matrix (``‖ΔW_a − ΔW_b‖ / ‖ΔW_b‖``, largest over matrices) and whether
each side's edit takes (the argmax after the prompt is the target's first token). X1 then
attributes a two-token ground truth: EasyEdit (grid patched) against lm-edit's code on
EasyEdit's activation, with each answer token attributed where lm-edit puts it (after the
prompt and the answer's earlier tokens), all at the prompt's end (EasyEdit's GPT-2 path:
``knowledge_neurons.py`` re-tokenises only for ``model_type == "gpt"``, ``"llama"`` or
``"qwen"*``), or after the prompt and its greedy token as text (its Llama path). A
Markdown table summarises the run. CPU only, under a minute::

    OMP_NUM_THREADS=1 python bench/compare_kn.py --reference-dir <dir> [--only S1] \\
        [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from easyedit_copy import (  # first: puts this checkout's lm_edit on sys.path
    Patch,
    comparison_parser,
    find_checkout,
    patched_packages,
)

KN_DIR = Path("easyeditor/models/kn")
KN_FILES = (
    "__init__.py",
    "kn_main.py",
    "kn_hparams.py",
    "knowledge_neurons/knowledge_neurons/__init__.py",
    "knowledge_neurons/knowledge_neurons/knowledge_neurons.py",
    "knowledge_neurons/knowledge_neurons/patch.py",
    "knowledge_neurons/knowledge_neurons/data.py",
)
PACKAGE_PREFIX = "easyedit_kn_"
KN_PY = "knowledge_neurons/knowledge_neurons/knowledge_neurons.py"


# -- textual patches of the reference copy: (file, old, new, expected count) --------------
# Needed to import the KN files on their own on CPU; no change of behaviour.
BASE_PATCHES: list[Patch] = [
    # EasyEdit's HyperParams base class only adds the from_hparams helpers
    (
        "kn_hparams.py",
        "from ...util.hparams import HyperParams",
        "HyperParams = object  # patched: EasyEdit's base class only adds from_hparams helpers",
        1,
    ),
    # everything runs on the CPU
    (
        "kn_main.py",
        "from ...util.device import normalize_device",
        "normalize_device = lambda device: 'cpu'  # patched: CPU only",
        1,
    ),
    # einops is not installed here; its two repeat patterns tile along the batch dimension
    (
        KN_PY,
        "import einops\n",
        "class einops:  # patched: '... -> (r b) ...' is torch's repeat along dim 0\n"
        "    repeat = staticmethod(lambda x, pattern, r: x.repeat(r, *[1] * (x.dim() - 1)))\n",
        1,
    ),
]

# EasyEdit integrates over torch.linspace(0, 1, steps) (knowledge_neurons.py:222/228: the
# first point is a zero activation, and with steps=1 the only one); lm-edit over k/steps,
# k = 1..steps (attribution.py, layer_attribution). The patch takes lm-edit's grid.
P_GRID: Patch = (
    KN_PY,
    "torch.linspace(start=0, end=1, steps=steps)",
    "(torch.arange(1, steps + 1, dtype=torch.float32) / steps)",
    2,
)
VARIANTS: dict[str, list[Patch]] = {"R0": [], "R1": [P_GRID]}

SUBJECTS = [
    "The Eiffel Tower",
    "The Colosseum",
    "Danielle Darrieux",
    "Toyota",
    "Volkswagen",
    "Michael Jordan",
    "Lionel Messi",
]
RELATIONS = [
    "is located in the city of",
    "is a native speaker of",
    "is a car company from",
    "plays the sport of",
    "is in",
    "plays",
]
CANDIDATE_PROMPTS = [f"{subject} {relation}" for relation in RELATIONS for subject in SUBJECTS]
MULTI_TOKEN = ("Michael Jordan plays the sport of", " football")  # two tokens
TARGETS = [" Rome", " Paris", " Japan", " Germany", " French"]
N_REQUESTS = 3


@dataclass(frozen=True)
class Setting:
    """A model family and EasyEdit's attribution hparams for it."""

    code: str
    family: str
    steps: int
    batch_size: int

    @property
    def model_name(self) -> str:
        """A name EasyEdit's ``model_type`` maps to the family's module names."""
        return f"tiny-{self.family}"


SETTINGS = [
    Setting("S1", "llama", 1, 1),
    Setting("S2", "llama", 20, 20),
    Setting("S3", "gpt2", 20, 20),
]
FAMILIES = ("llama", "gpt2")
COMPARISONS = {
    "C0": "as is (kn.yaml defaults vs EasyEdit)",
    "C1": "options aligned",
    "C2": "C1 + grid k/steps (P_GRID)",
    "C3": "C2 + EasyEdit's activation",
}
THRESHOLD, P = 0.2, 0.4


# -- the reference ------------------------------------------------------------------------
@contextlib.contextmanager
def reference_variants(checkout: Path) -> Iterator[dict[str, ModuleType]]:
    """``kn_main`` of each variant, imported from patched copies in a temporary folder;
    the imported modules are forgotten after."""
    variants = {name: BASE_PATCHES + patches for name, patches in VARIANTS.items()}
    with patched_packages(
        checkout, KN_DIR, KN_FILES, variants, PACKAGE_PREFIX, "compare_kn"
    ) as packages:
        yield {
            name: importlib.import_module(f"{package}.kn_main")
            for name, package in packages.items()
        }


def print_patches() -> None:
    """The patches and the variants built from them."""
    print("Reference patches (file: old -> new, expected count):")
    for file, old, new, count in BASE_PATCHES:
        print(f"  base    {file}: {old!r} -> {new!r} ({count}x)")
    file, old, new, count = P_GRID
    print(f"  P_GRID  {file}: {old!r} -> {new!r} ({count}x)")
    print("  R0: base; R1: base + P_GRID")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow EasyEdit's prints and progress bars."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def hparams(kn_main: ModuleType, setting: Setting) -> Any:
    """EasyEdit's KN hparams for ``setting`` (its hparams/KN files' values)."""
    return kn_main.KNHyperParams(
        lr_scale=1.0,
        n_toks=10,
        model_name=setting.model_name,
        refine=False,
        batch_size=setting.batch_size,
        steps=setting.steps,
        adaptive_threshold=THRESHOLD,
        p=P,
        device=0,
        alg_name="KN",
    )


def easyedit_scores(
    kn_main: ModuleType, model: Any, tokenizer: Any, setting: Setting, request: Request
) -> torch.Tensor:
    """EasyEdit's attribution of every neuron (``(layers, width)``) for the ground truth."""
    kn = kn_main.KnowledgeNeurons(
        model, tokenizer, model_type=kn_main.model_type(setting.model_name), device="cpu"
    )
    with quiet():
        scores = kn.get_scores(
            request.prompt,
            request.ground_truth,
            batch_size=setting.batch_size,
            steps=setting.steps,
            pbar=False,
        )
    return scores.detach().cpu()


def easyedit_edit(
    kn_main: ModuleType, base: Any, tokenizer: Any, setting: Setting, request: Request
) -> Any:
    """A copy of ``base`` edited by EasyEdit's ``apply_kn_to_model``."""
    model = copy.deepcopy(base)
    raw = {
        "prompt": request.prompt,
        "ground_truth": request.ground_truth,
        "target_new": request.target_new,
    }
    with quiet():
        edited, _ = kn_main.apply_kn_to_model(model, tokenizer, [raw], hparams(kn_main, setting))
    return edited


# -- lm-edit ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """A prompt, the model's greedy word after it (the fact held) and a new target."""

    prompt: str
    ground_truth: str
    target_new: str


class PreActivation:
    """lm-edit's anatomy, but the MLP module whose input attribution reads is the
    activation function (its input is EasyEdit's activation: ``gate_proj``'s or
    ``c_fc``'s output)."""

    def __init__(self, anatomy: Any, act: str) -> None:
        self.anatomy = anatomy
        self.act = act

    def __getattr__(self, name: str) -> Any:
        return getattr(self.anatomy, name)

    def mlp_out_module(self, model: Any, layer: int) -> Any:
        """The activation function of block ``layer``'s MLP."""
        mlp = self.anatomy.mlp_out_name(layer).rsplit(".", 1)[0]
        return model.get_submodule(f"{mlp}.{self.act}")


def act_name(family: str) -> str:
    """The MLP's activation-function module in the family's transformers code."""
    return "act_fn" if family == "llama" else "act"


def lm_options(setting: Setting, comparison: str) -> dict[str, Any]:
    """lm-edit's hyperparameters in a comparison (C0: kn.yaml's defaults)."""
    if comparison == "C0":
        return {}
    return {
        "steps": setting.steps,
        "steps_per_batch": setting.batch_size,
        "adaptive_threshold": THRESHOLD,
        "p": P,
        "refine": False,
        "erase_scale": 2.0,
        "write_scale": 1.0,
        "embedding": "input",
    }


@contextlib.contextmanager
def pre_activation_locate(family: str) -> Iterator[None]:
    """While open, lm-edit's editor locates neurons on EasyEdit's activation."""
    from lm_edit.editors.neurons import editor as module

    real = module.locate

    def locate(model: Any, tokenizer: Any, anatomy: Any, *rest: Any) -> Any:
        return real(model, tokenizer, PreActivation(anatomy, act_name(family)), *rest)

    module.locate = locate
    try:
        yield
    finally:
        module.locate = real


def lm_edit_run(
    base: Any, tokenizer: Any, setting: Setting, comparison: str, request: Request
) -> tuple[torch.Tensor, Any]:
    """lm-edit's attribution (``(layers, width)``) and a copy of ``base`` edited by lm-edit's
    KN, under a comparison's settings."""
    from lm_edit.data.requests import EditRequest
    from lm_edit.editors.neurons.attribution import answer_queries, prompt_attribution
    from lm_edit.stream import EditStream

    model = copy.deepcopy(base)
    stream = EditStream.create(model, tokenizer, "kn", **lm_options(setting, comparison))
    anatomy = stream.anatomy
    if comparison == "C3":
        anatomy = PreActivation(anatomy, act_name(setting.family))
    queries = answer_queries(tokenizer, request.prompt, request.ground_truth)
    scores = prompt_attribution(model, anatomy, queries, stream.editor.settings(model))
    edit = EditRequest(
        "kn",
        request.prompt,
        request.prompt,
        request.target_new,
        target_true=request.ground_truth.strip(),
    )
    with pre_activation_locate(setting.family) if comparison == "C3" else contextlib.nullcontext():
        stream.apply([edit], batch_size=1, progress=False)
    return scores, model


# -- measurements -------------------------------------------------------------------------
def greedy(model: Any, tokenizer: Any, prompt: str) -> int:
    """The model's most likely next token after ``prompt``."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokenizer(prompt)["input_ids"]])).logits
    return int(logits[0, -1].argmax())


def pick_requests(model: Any, tokenizer: Any) -> list[Request]:
    """The first prompts after which the greedy token is a whole word (the same token as
    EasyEdit's ``encode(word)`` and lm-edit's ``" " + word.strip()``), each with a
    one-token target other than it."""
    requests = []
    for prompt in CANDIDATE_PROMPTS:
        token = greedy(model, tokenizer, prompt)
        word = tokenizer.decode([token])
        whole = word.startswith(" ") and word.strip()
        if not whole or tokenizer(" " + word.strip())["input_ids"] != [token]:
            continue
        target = next(t for t in TARGETS[len(requests) :] + TARGETS if t != word)
        requests.append(Request(prompt, word, target))
        if len(requests) == N_REQUESTS:
            return requests
    sys.exit(f"compare_kn: only {len(requests)} prompts with a whole-word greedy token")


def value_changes(base: Any, edited: Any, anatomy: Any) -> dict[int, torch.Tensor]:
    """ΔW of every MLP output projection (as ``(out, in)``) that changed."""
    from lm_edit.core.anatomy import weight_as_out_in

    changes = {}
    for layer in range(anatomy.num_layers(base)):
        before = weight_as_out_in(anatomy.mlp_out_module(base, layer), anatomy.transposed)
        after = weight_as_out_in(anatomy.mlp_out_module(edited, layer), anatomy.transposed)
        delta = (after - before).detach()
        if delta.abs().max() > 0:
            changes[layer] = delta
    return changes


def neurons_of(changes: dict[int, torch.Tensor]) -> set[tuple[int, int]]:
    """The neurons whose value vector (column of ΔW) changed."""
    return {
        (layer, int(unit))
        for layer, delta in changes.items()
        for unit in torch.nonzero(delta.abs().sum(dim=0) > 0).flatten()
    }


def takes(model: Any, tokenizer: Any, request: Request) -> bool:
    """Whether the argmax after the prompt is the target's first token."""
    first = tokenizer(request.target_new)["input_ids"][0]
    return greedy(model, tokenizer, request.prompt) == first


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a − b| / max|b|``."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def delta_rel(ours: dict[int, torch.Tensor], theirs: dict[int, torch.Tensor]) -> float:
    """Largest ``‖ΔW_a − ΔW_b‖ / ‖ΔW_b‖`` over the matrices either side changed (a matrix
    only one side changed counts as 1 against a zero change, inf the other way)."""
    worst = 0.0
    for layer in sorted(set(ours) | set(theirs)):
        a = ours.get(layer)
        b = theirs.get(layer)
        if b is None:
            worst = float("inf")
            continue
        a = torch.zeros_like(b) if a is None else a
        worst = max(worst, float((a - b).norm() / b.norm()))
    return worst


def compare_setting(
    setting: Setting, tokenizer: Any, variants: dict[str, ModuleType]
) -> dict[str, Any]:
    """Every comparison of one setting, per request."""
    from lm_edit.core.anatomy import resolve_anatomy
    from tests.conftest import make_tiny_model

    base = make_tiny_model(setting.family, len(tokenizer)).float()
    base.requires_grad_(False)
    anatomy = resolve_anatomy(base)
    requests = pick_requests(base, tokenizer)
    reference: dict[str, list[tuple[torch.Tensor, dict, bool]]] = {}
    for name, kn_main in variants.items():
        reference[name] = []
        for request in requests:
            scores = easyedit_scores(kn_main, base, tokenizer, setting, request)
            edited = easyedit_edit(kn_main, base, tokenizer, setting, request)
            changes = value_changes(base, edited, anatomy)
            reference[name].append((scores, changes, takes(edited, tokenizer, request)))
    rows = {}
    for comparison in COMPARISONS:
        variant = "R1" if comparison in ("C2", "C3") else "R0"
        per_request = []
        for request, (their_scores, theirs, their_take) in zip(
            requests, reference[variant], strict=True
        ):
            scores, edited = lm_edit_run(base, tokenizer, setting, comparison, request)
            ours = value_changes(base, edited, anatomy)
            per_request.append(
                {
                    "attribution_rel": rel(scores, their_scores),
                    "neurons_lm": len(neurons_of(ours)),
                    "neurons_ee": len(neurons_of(theirs)),
                    "same_neurons": neurons_of(ours) == neurons_of(theirs),
                    "only_lm": sorted(neurons_of(ours) - neurons_of(theirs)),
                    "only_ee": sorted(neurons_of(theirs) - neurons_of(ours)),
                    "delta_w_rel": delta_rel(ours, theirs),
                    "takes_lm": takes(edited, tokenizer, request),
                    "takes_ee": their_take,
                }
            )
        rows[comparison] = {"variant": variant, "requests": per_request}
    return {
        "setting": setting.code,
        "family": setting.family,
        "steps": setting.steps,
        "batch_size": setting.batch_size,
        "requests": [vars(r) for r in requests],
        "comparisons": rows,
    }


def multi_token_check(
    family: str, tokenizer: Any, kn_main: ModuleType
) -> dict[str, float | list[int]]:
    """X1: a two-token ground truth. EasyEdit's attribution (grid patched) against lm-edit's
    code on EasyEdit's activation with three choices of where each token is attributed:
    lm-edit's (after the prompt and the answer's earlier tokens), all at the prompt's end,
    and after the prompt followed by the greedy token, re-tokenised as text."""
    from lm_edit.core.anatomy import resolve_anatomy
    from lm_edit.editors.neurons.attribution import (
        AttributionSettings,
        Query,
        answer_queries,
        prompt_attribution,
    )
    from tests.conftest import make_tiny_model

    model = make_tiny_model(family, len(tokenizer)).float()
    model.requires_grad_(False)
    anatomy = PreActivation(resolve_anatomy(model), act_name(family))
    setting = Setting("X1", family, 20, 20)
    prompt, answer = MULTI_TOKEN
    ids = tokenizer(prompt)["input_ids"]
    tokens = tokenizer(answer)["input_ids"]
    theirs = easyedit_scores(kn_main, model, tokenizer, setting, Request(prompt, answer, ""))
    settings = AttributionSettings(tuple(range(anatomy.num_layers(model))), 20, 20, THRESHOLD, P)
    following = prompt + tokenizer.decode([greedy(model, tokenizer, prompt)])
    queries = {
        "teacher_forced": answer_queries(tokenizer, prompt, answer),
        "all_at_prompt_end": [Query(ids, token) for token in tokens],
        "greedy_retokenised": [
            Query(ids, tokens[0]),
            *[Query(tokenizer(following)["input_ids"], token) for token in tokens[1:2]],
        ],
    }
    out: dict[str, float | list[int]] = {"answer_tokens": tokens}
    for name, query in queries.items():
        out[name] = rel(prompt_attribution(model, anatomy, query, settings), theirs)
    return out


# -- output -------------------------------------------------------------------------------
def fmt(x: float) -> str:
    """A relative difference, short."""
    return "inf" if x == float("inf") else f"{x:.1e}"


def print_setting(result: dict[str, Any]) -> None:
    """Per-request figures of one setting."""
    print(
        f"\n{result['setting']}: {result['family']}, EasyEdit steps {result['steps']}, "
        f"batch_size {result['batch_size']}"
    )
    for index, request in enumerate(result["requests"]):
        print(
            f"  request {index}: {request['prompt']!r} -> greedy/ground truth "
            f"{request['ground_truth']!r}, new {request['target_new']!r}"
        )
    for code, row in result["comparisons"].items():
        print(f"  {code} {COMPARISONS[code]} (EasyEdit {row['variant']}):")
        for index, r in enumerate(row["requests"]):
            print(
                f"    request {index}: attribution rel {fmt(r['attribution_rel'])}, neurons "
                f"lm {r['neurons_lm']} / EE {r['neurons_ee']} (same: {r['same_neurons']}; "
                f"only lm {r['only_lm'][:6]}, only EE {r['only_ee'][:6]}), ΔW rel "
                f"{fmt(r['delta_w_rel'])}, takes lm {r['takes_lm']} / EE {r['takes_ee']}"
            )


def print_table(results: list[dict[str, Any]]) -> None:
    """The Markdown summary: one row per setting and comparison, worst over requests."""
    print(
        "\n| setting | comparison | attribution max rel diff | same neurons | neurons lm / EE "
        "| ΔW max rel diff | edit takes lm / EE |"
    )
    print("|---|---|---:|---|---|---:|---|")
    for result in results:
        label = f"{result['setting']} {result['family']} steps {result['steps']}"
        for code, row in result["comparisons"].items():
            rs = row["requests"]
            n = len(rs)
            print(
                f"| {label} | {code} {COMPARISONS[code]} "
                f"| {fmt(max(r['attribution_rel'] for r in rs))} "
                f"| {sum(r['same_neurons'] for r in rs)}/{n} "
                f"| {' '.join(str(r['neurons_lm']) for r in rs)} / "
                f"{' '.join(str(r['neurons_ee']) for r in rs)} "
                f"| {fmt(max(r['delta_w_rel'] for r in rs))} "
                f"| {sum(r['takes_lm'] for r in rs)}/{n} / {sum(r['takes_ee'] for r in rs)}/{n} |"
            )


def print_multi_token(x1: dict[str, dict[str, Any]]) -> None:
    """X1's figures."""
    print(f"\nX1: two-token ground truth {MULTI_TOKEN[1]!r} after {MULTI_TOKEN[0]!r}")
    print(
        "| family | tokens | lm-edit (teacher-forced) | all at prompt end | greedy, re-tokenised |"
    )
    print("|---|---|---:|---:|---:|")
    for family, r in x1.items():
        print(
            f"| {family} | {r['answer_tokens']} | {fmt(r['teacher_forced'])} "
            f"| {fmt(r['all_at_prompt_end'])} | {fmt(r['greedy_retokenised'])} |"
        )


def parse_args() -> argparse.Namespace:
    parser = comparison_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=[s.code for s in SETTINGS], help="run one setting")
    return parser.parse_args()


def main() -> None:
    """Import the reference variants, run the settings, print the table."""
    args = parse_args()
    checkout = find_checkout(args.reference_dir, KN_DIR, KN_FILES, "compare_kn")
    torch.set_num_threads(1)  # one reduction order on both sides
    import transformers

    from tests.conftest import _train_tokenizer

    transformers.logging.set_verbosity_error()
    print(f"EasyEdit KN from {checkout / KN_DIR}")
    print_patches()
    tokenizer = _train_tokenizer()
    results = []
    with reference_variants(checkout) as variants:
        for setting in SETTINGS:
            if args.only and setting.code != args.only:
                continue
            results.append(compare_setting(setting, tokenizer, variants))
            print_setting(results[-1])
        x1 = (
            {}
            if args.only
            else {f: multi_token_check(f, tokenizer, variants["R1"]) for f in FAMILIES}
        )
    print_table(results)
    if x1:
        print_multi_token(x1)
    if args.json:
        summary = {"settings": results, "x1_multi_token": x1}
        args.json.write_text(json.dumps(summary, indent=1, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
