"""Run lm-edit's ROME, r-ROME, MEMIT, EMMET, AlphaEdit and PMET and the papers' reference
code on the same inputs.

The reference code is not part of lm-edit: extract kmeng01/rome,
scalable-model-editing/rebuilding-rome, kmeng01/memit,
scalable-model-editing/unified-model-editing, jianghoucheng/AlphaEdit and xpq-tech/PMET
into a folder outside the repository, as ``rome/``, ``r-rome/``, ``memit/``, ``emmet/``,
``alphaedit/`` and ``pmet/`` (see docs/reference-comparison.md), and pass it with
``--reference-dir`` (or ``LM_EDIT_REFERENCE_DIR``); ``--editors`` picks the comparisons
(all six by default).

Both implementations get the same tiny random GPT-2, the same key statistics ``C``
(collected once by lm-edit, handed to the reference by replacing its ``get_inv_cov`` /
``get_cov``; AlphaEdit's projector ``P`` comes from the reference's own ``get_project``
on that ``C``), the same fixed context templates (replacing the reference's sampled
``get_context_templates``; lm-edit's ``context_templates`` option) and the same requests
and hyperparameters. The reference is imported from a temporary copy with the textual
adjustments listed in ``REFERENCE_PATCHES`` (device, dtype and current transformers),
printed at start. For every edited weight the script prints ``‖ΔW_ref − ΔW_ours‖ /
‖ΔW_ref‖`` and the same relative difference of the intermediate quantities (keys k,
ROME's left vector u, the target values v*, AlphaEdit's ``P`` and accumulated keys).

    python bench/compare_reference.py --reference-dir /work/ref --dtype float64
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # lm_edit of this checkout, not another installed copy
    sys.path.insert(0, str(ROOT))

LAYERS_ROME = [2]
LAYERS_MEMIT = [1, 2, 3]
N_LAYER = 5

REQUESTS = [
    {"case_id": "eiffel", "prompt": "{} is located in", "subject": "The Eiffel Tower"},
    {"case_id": "toyota", "prompt": "{} is a car company from", "subject": "Toyota"},
    {"case_id": "messi", "prompt": "{} plays the sport of", "subject": "Lionel Messi"},
    # the subject ends the prompt: an edit reaches the early-stop threshold within steps
    {"case_id": "darrieux", "prompt": "The native language of {}", "subject": "Danielle Darrieux"},
]
TARGETS = {"eiffel": "Rome", "toyota": "Germany", "messi": "basketball", "darrieux": "French"}

# Groups of fixed context templates: the bare prompt, then short and long prefixes
# (the reference samples these from the model; here both sides get the same list).
TEMPLATES_ROME = [
    ["{}"],
    ["The city is. {}", "Therefore it was. {}", "Because the car. {}", "I think so. {}"],
    [
        "The Tower is located in the city of Paris. {}",
        "You know the sport of football and basketball. {}",
        "Because it is a native speaker of French. {}",
    ],
]
TEMPLATES_MEMIT = [
    ["{}"],
    [
        "The Tower is located in the city of Paris. {}",
        "Therefore it is a car company from Japan. {}",
        "Because it is a native speaker of French. {}",
        "I think Michael Jordan plays the sport. {}",
        "You know the city of Rome. {}",
    ],
]

CORPUS = [
    "The Eiffel Tower is located in the city of Paris.",
    "The Colosseum is located in the city of Rome.",
    "Danielle Darrieux is a native speaker of French.",
    "Toyota is a car company from Japan. Volkswagen is a car company from Germany.",
    "Michael Jordan plays the sport of basketball. Lionel Messi plays football.",
    "Therefore, because I think you know, the news is a story.",
]


def _cpu(file: str, count: int) -> tuple[str, str, str, int]:
    """The hard-coded device of ``file`` replaced by the script's."""
    return (file, '"cuda"', "{device!r}", count)


_FIRST = "def _first(out):\n    return out[0] if isinstance(out, tuple) else out\n\n\n"


def _block_output(file: str, cur_out: int) -> list[tuple[str, str, str, int]]:
    """Current transformers: a GPT-2 block returns a tensor, no longer a tuple (MEMIT's
    ``compute_z`` and its copies read the block output as ``output[0]``)."""
    return [
        (file, "cur_out[0][", "_first(cur_out)[", cur_out),
        (file, "loss_layer)].output[0][", "loss_layer)].output)[", 1),
        (file, "full_repr = tr[", "full_repr = _first(tr[", 1),
        (file, "def compute_z(", _FIRST + "def compute_z(", 1),
    ]


# Per checkout, (file, text, replacement, expected count): the only changes made to the
# copy of the reference code, so that it runs on CPU with the installed transformers.
REFERENCE_PATCHES: dict[str, list[tuple[str, str, str, int]]] = {
    "rome": [_cpu("rome/compute_v.py", 4)],
    "r-rome": [_cpu("rome/compute_v.py", 4)],
    "memit": [
        _cpu("rome/compute_v.py", 4),
        _cpu("memit/compute_z.py", 4),
        _cpu("memit/memit_main.py", 5),
        *_block_output("memit/compute_z.py", 2),
    ],
    "emmet": [
        _cpu("emmet/compute_z.py", 3),
        _cpu("emmet/emmet_main.py", 5),
        *_block_output("emmet/compute_z.py", 2),
    ],
    "alphaedit": [
        _cpu("AlphaEdit/compute_z.py", 5),
        _cpu("AlphaEdit/AlphaEdit_main.py", 4),
        (
            "AlphaEdit/AlphaEdit_main.py",
            ".cuda()",
            ".to({device!r})",
            3,
        ),
        # its L2 term is float32 whatever the model's dtype (a float64 model fails)
        ("AlphaEdit/AlphaEdit_main.py", "dtype=torch.float,", "dtype=layer_ks.dtype,", 1),
        ("AlphaEdit/compute_z.py", "cur_out[0][", "_first(cur_out)[", 3),
        ("AlphaEdit/compute_z.py", "len(cur_out[0])", "len(_first(cur_out))", 1),
        (
            "AlphaEdit/compute_z.py",
            "output=tr[hparams.layer_module_tmp.format(loss_layer)].output[0]",
            "output=_first(tr[hparams.layer_module_tmp.format(loss_layer)].output)",
            1,
        ),
        ("AlphaEdit/compute_z.py", "def compute_z(", _FIRST + "def compute_z(", 1),
    ],
    "pmet": [
        _cpu("pmet/compute_zs.py", 11),
        _cpu("pmet/pmet_main.py", 2),
        ("pmet/pmet_main.py", '"cuda:0"', "{device!r}", 3),
        ("pmet/pmet_main.py", '"cuda:1"', "{device!r}", 4),
        ("pmet/compute_zs.py", "loss_layer)].output[0][", "loss_layer)].output)[", 2),
        ("pmet/compute_zs.py", "full_repr = tr[", "full_repr = _first(tr[", 2),
        ("pmet/compute_zs.py", "def compute_zs(", _FIRST + "def compute_zs(", 1),
    ],
}
# Checkout folder -> the package of the method in it.
PACKAGES = {
    "rome": "rome",
    "r-rome": "rome",
    "memit": "memit",
    "emmet": "emmet",
    "alphaedit": "AlphaEdit",
    "pmet": "edit/pmet",
}
SOURCES = {
    "rome": "kmeng01/rome",
    "r-rome": "scalable-model-editing/rebuilding-rome",
    "memit": "kmeng01/memit",
    "emmet": "scalable-model-editing/unified-model-editing",
    "alphaedit": "jianghoucheng/AlphaEdit",
    "pmet": "xpq-tech/PMET",
}


# The reference hyperparameters that name GPT-2's modules and switch off their own
# statistics collection (both sides get lm-edit's C), shared by ROME and MEMIT.
GPT2_HPARAMS = dict(
    fact_token="subject_last",
    v_loss_layer=N_LAYER - 1,
    mom2_adjustment=True,
    rewrite_module_tmp="transformer.h.{}.mlp.c_proj",
    layer_module_tmp="transformer.h.{}",
    mlp_module_tmp="transformer.h.{}.mlp",
    attn_module_tmp="transformer.h.{}.attn",
    ln_f_module="transformer.ln_f",
    lm_head_module="transformer.wte",
    mom2_dataset="-",
    mom2_n_samples=0,
    mom2_dtype="float32",
)


def reference_root() -> Path:
    """The folder holding the reference checkouts, or exit with instructions."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-dir", default=os.environ.get("LM_EDIT_REFERENCE_DIR"))
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--editors", default=",".join(PACKAGES))
    args = parser.parse_args()
    root = Path(args.reference_dir) if args.reference_dir else None
    wanted = args.editors.split(",")
    unknown = sorted(set(wanted) - set(PACKAGES))
    if unknown:
        sys.exit(f"compare_reference: unknown editors {unknown}; choose from {list(PACKAGES)}.")
    missing = [n for n in wanted if root is None or not (root / n / PACKAGES[n]).is_dir()]
    if missing:
        where = ", ".join(f"{SOURCES[n]} into <dir>/{n}" for n in missing)
        sys.exit(
            f"compare_reference: no reference code for {', '.join(missing)}. Extract {where} "
            "(see docs/reference-comparison.md) and pass --reference-dir <dir> or set "
            "LM_EDIT_REFERENCE_DIR."
        )
    ARGS.update(vars(args))
    return root


ARGS: dict[str, Any] = {}
COPIED = ("rome", "memit", "emmet", "AlphaEdit", "pmet", "util")


@contextlib.contextmanager
def reference_code(checkout: Path, device: str) -> Iterator[Path]:
    """Import path of a patched temporary copy of ``checkout`` (its method packages, ``util``
    and ``globals.yml``); the imported modules are forgotten after."""
    patches = REFERENCE_PATCHES[checkout.name]
    code = checkout / Path(PACKAGES[checkout.name]).parent  # PMET's code is in edit/
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        for name in COPIED:
            if (code / name).is_dir():
                shutil.copytree(code / name, copy / name)
        shutil.copy(code / "globals.yml", copy / "globals.yml")
        for file, old, new, count in patches:
            path = copy / file
            text = path.read_text()
            found = text.count(old)
            if found != count:
                sys.exit(
                    f"compare_reference: patch {old!r} expected {count}x in {file}, got {found}"
                )
            path.write_text(text.replace(old, new.format(device=device)))
        cwd = Path.cwd()
        os.chdir(copy)  # util/globals.py reads ./globals.yml at import
        sys.path.insert(0, str(copy))
        try:
            yield copy
        finally:
            os.chdir(cwd)
            sys.path.remove(str(copy))
            for module in list(sys.modules):
                if module.split(".")[0] in COPIED:
                    del sys.modules[module]


def reference_function(path: Path, name: str, namespace: dict[str, Any]) -> Callable:
    """The top-level function ``name`` of the reference file ``path``, compiled on its own
    in ``namespace`` (importing the file would import the whole experiment harness)."""
    tree = ast.parse(path.read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]


def train_tokenizer():
    """A byte-level BPE tokenizer trained in memory (GPT-2's is not available offline)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
    )


def build_model(vocab_size: int, dtype: torch.dtype):
    """A random GPT-2 with ``N_LAYER`` blocks (fixed seed, eval mode)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=N_LAYER,
        n_embd=32,
        n_head=2,
        vocab_size=vocab_size,
        n_positions=128,
        initializer_range=0.2,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config).to(dtype).eval()
    with torch.no_grad():  # sharper next-token distributions, so that NLLs near 0 are reachable
        model.transformer.ln_f.weight.fill_(4.0)
    return model


def stats_text(path: Path, passages: int = 300) -> Path:
    """A file of random word sequences (one passage per paragraph) for the key statistics."""
    words = " ".join(CORPUS).replace(".", "").split()
    rng = random.Random(0)
    text = "\n\n".join(" ".join(rng.choices(words, k=rng.randint(8, 24))) for _ in range(passages))
    path.write_text(text)
    return path


def rel(ref: torch.Tensor, ours: torch.Tensor) -> float:
    """``‖ref − ours‖ / ‖ref‖`` in float64."""
    ref, ours = ref.detach().double().cpu(), ours.detach().double().cpu()
    return float((ref - ours).norm() / ref.norm().clamp_min(1e-300))


@dataclass
class Row:
    """One line of the summary table."""

    editor: str
    setting: str
    dw: list[float]
    v: float
    k: float
    extra: dict[str, float] = field(default_factory=dict)


def lm_edit_editor(model, tokenizer, name: str, overrides: dict[str, Any]):
    """A prepared lm-edit editor ``name`` with ``overrides``."""
    from lm_edit.core.anatomy import resolve_anatomy
    from lm_edit.editors.registry import create_editor, resolve_editor

    spec = resolve_editor(name, model, overrides)
    editor = create_editor(spec, resolve_anatomy(model), seed=0)
    editor.prepare(model, tokenizer)
    return editor


def edit_requests(requests: list[dict]):
    """lm-edit's requests for the reference's dicts."""
    from lm_edit.data.requests import EditRequest

    return [
        EditRequest(
            r["case_id"], r["prompt"].format(r["subject"]), r["subject"], r["target_new"]["str"]
        )
        for r in requests
    ]


def weight_delta(
    model, tokenizer, editor, requests, names: list[str], records: list | None = None
) -> dict[str, torch.Tensor]:
    """Apply ``requests`` with ``editor``, return each weight's change; undo the edit, or
    append its record to ``records`` to undo later."""
    before = {n: model.get_parameter(n).detach().clone() for n in names}
    record = editor.apply(model, tokenizer, edit_requests(requests))
    after = {n: model.get_parameter(n).detach().clone() for n in names}
    if records is None:
        record.undo(model)
    else:
        records.append(record)
    return {n: after[n] - before[n] for n in names}


@contextlib.contextmanager
def recording(module: Any, name: str, store: list) -> Iterator[None]:
    """Replace ``module.name`` by a wrapper appending (args, kwargs, result) to ``store``."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        store.append((args, kwargs, result))
        return result

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def common_values(
    steps: int, lr: float, clamp: float, decay: float, kl: float = 0.0625
) -> dict[str, Any]:
    """v* settings shared by lm-edit and the reference."""
    return {
        "v_num_grad_steps": steps,
        "v_lr": lr,
        "clamp_norm_factor": clamp,
        "v_weight_decay": decay,
        "kl_factor": kl,
    }


NLL = {"early_stop_on": "nll"}  # lm-edit's other early stop: the NLL alone
SETTINGS_ROME: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (shared v* settings, extra lm-edit overrides)
    "default (25 steps, lr 0.5, clamp 4), early_stop_on=nll": (
        common_values(25, 0.5, 4.0, 0.5),
        NLL,
    ),
    "default, kl_factor 0, early_stop_on=nll": (common_values(25, 0.5, 4.0, 0.5, kl=0.0), NLL),
    "converging (60 steps, lr 1, clamp 100, decay 1e-3), early_stop_on=nll": (
        common_values(60, 1.0, 100.0, 1e-3),
        NLL,
    ),
    "default, early_stop_on=loss": (common_values(25, 0.5, 4.0, 0.5), {"early_stop_on": "loss"}),
    "converging, early_stop_on=loss": (
        common_values(60, 1.0, 100.0, 1e-3),
        {"early_stop_on": "loss"},
    ),
}


# r-ROME's switches in rebuilding-rome's rome/rome_hparams.py: the prefix-averaged key and
# output in the update (compute_v), not those of the bare prompt.
R_ROME_HPARAMS = dict(
    enable_random_prefix_keys=True, enable_prompt_keys=False, original_implementation=False
)
ROME_VARIANTS: dict[str, tuple[dict[str, Any], list[str]]] = {
    # checkout: (reference hyperparameters beyond ROME's, settings compared)
    "rome": ({}, list(SETTINGS_ROME)),
    "r-rome": (R_ROME_HPARAMS, ["default, early_stop_on=loss", "converging, early_stop_on=loss"]),
}


def compare_rome(
    root: Path, model, tokenizer, stats_file: Path, device: str, name: str = "rome"
) -> list[Row]:
    """ROME or r-ROME (``name``) per request on the unedited model: the reference's
    execute_rome vs editor=``name``."""
    rows = []
    layer = LAYERS_ROME[0]
    weight = f"transformer.h.{layer}.mlp.c_proj.weight"
    flat = [t for group in TEMPLATES_ROME for t in group]
    extra_hparams, settings = ROME_VARIANTS[name]
    with reference_code(root / name, device):
        rome_main = importlib.import_module("rome.rome_main")
        compute_u_mod = importlib.import_module("rome.compute_u")
        compute_v_mod = importlib.import_module("rome.compute_v")
        repr_tools = importlib.import_module("rome.repr_tools")
        hparams_cls = importlib.import_module("rome.rome_hparams").ROMEHyperParams
        for setting in settings:
            values, extra = SETTINGS_ROME[setting]
            overrides = {
                **values,
                "layers": [layer],
                "early_stop_nll": 0.05,
                "context_templates": TEMPLATES_ROME,
                "stats_source": str(stats_file),
                "stats_ridge": 0.0,
                **extra,
            }
            editor = lm_edit_editor(model, tokenizer, name, overrides)
            cov = editor.covariances[layer]
            inv = torch.linalg.inv(cov.double()).to(model.dtype)
            compute_u_mod.get_inv_cov = lambda *a, inv=inv, **k: inv
            rome_main.get_context_templates = lambda *a, **k: flat
            hparams = hparams_cls(
                layers=[layer],
                context_template_length_params=[],
                **GPT2_HPARAMS,
                **values,
                **extra_hparams,
            )
            # where the reference's update starts from: the bare prompt (ROME) or the
            # average over the context templates (r-ROME)
            averaged = extra_hparams.get("enable_random_prefix_keys", False)
            for request in REQUESTS:
                req = {**request, "target_new": {"str": TARGETS[request["case_id"]]}}
                us, vs = [], []
                with (
                    quiet(),
                    recording(rome_main, "compute_u", us),
                    recording(rome_main, "compute_v", vs),
                ):
                    deltas = rome_main.execute_rome(model, tokenizer, req, hparams)
                u_ref, v_right = deltas[weight]
                dw_ref = rome_main.upd_matrix_match_shape(
                    u_ref.unsqueeze(1) @ v_right.unsqueeze(0), model.get_parameter(weight).shape
                )
                contexts = [t.format(req["prompt"]) for t in flat] if averaged else [req["prompt"]]
                k_in, k_out = (
                    torch.stack(pair).mean(0)
                    for pair in zip(
                        *(
                            compute_v_mod.get_module_input_output_at_word(
                                model,
                                tokenizer,
                                layer,
                                context,
                                req["subject"],
                                hparams.rewrite_module_tmp,
                                hparams.fact_token,
                            )
                            for context in contexts
                        ),
                        strict=True,
                    )
                )
                v_ref = k_out + v_right * torch.dot(k_in, u_ref)
                k_ref = repr_tools.get_reprs_at_word_tokens(
                    model,
                    tokenizer,
                    [t.format(req["prompt"]) for t in flat],
                    [req["subject"]] * len(flat),
                    layer,
                    hparams.rewrite_module_tmp,
                    "last",
                    track="in",
                ).mean(0)
                ours = weight_delta(model, tokenizer, editor, [req], [weight])[weight]
                (value,) = editor.target_values(model, tokenizer, layer, edit_requests([req]))
                k_ours = editor._keys(model, tokenizer, layer, edit_requests([req]))[:, 0]
                # u of our update: the direction of its rank-one row space (in-dim side)
                u_ours = torch.linalg.svd(ours.double())[0][:, 0]
                u_ours = u_ours * torch.sign(torch.dot(u_ours, u_ref.double()))
                rows.append(
                    Row(
                        name,
                        f"{setting} [{request['case_id']}, steps {value.steps}]",
                        [rel(dw_ref, ours)],
                        rel(v_ref, value.target),
                        rel(k_ref, k_ours),
                        {"u": rel(u_ref, u_ours)},
                    )
                )
    return rows


SETTINGS_MEMIT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    f"key_average={average}, early_stop_on={stop}": (
        common_values(25, 0.5, 4.0, 0.5),
        {"key_average": average, "early_stop_on": stop},
    )
    for stop in ("nll", "loss")
    for average in ("flat", "per_group")
}
MEMIT_LAMBDA = 50.0


def batch_overrides(stats_file: Path, values: dict, extra: dict) -> dict[str, Any]:
    """lm-edit's settings of a batched editor (MEMIT, EMMET, AlphaEdit) in this comparison."""
    return {
        **values,
        "layers": LAYERS_MEMIT,
        "early_stop_nll": 0.05,
        "mom2_update_weight": MEMIT_LAMBDA,
        "context_templates": TEMPLATES_MEMIT,
        "stats_source": str(stats_file),
        "stats_ridge": 0.0,
        **extra,
    }


def batch_hparams(hparams_cls, values: dict, **extra):
    """The reference hyperparameters of a batched editor in this comparison."""
    return hparams_cls(
        layers=LAYERS_MEMIT,
        layer_selection="all",
        mom2_update_weight=MEMIT_LAMBDA,
        **GPT2_HPARAMS,
        **values,
        **extra,
    )


def hand_inputs(main, editor, model, *, with_keys: bool = False) -> dict[str, torch.Tensor]:
    """Make the reference module ``main`` use lm-edit's statistics (``get_cov``; EMMET's
    returns them with its preserved keys, unused here) and the fixed templates."""
    covs = {
        f"transformer.h.{layer}.mlp.c_proj": cov.to(model.dtype)
        for layer, cov in editor.covariances.items()
    }

    def get_cov(model_, tok_, name, *args, **kwargs):
        return (covs[name], None) if with_keys else covs[name]

    main.get_cov = get_cov
    main.get_context_templates = lambda *a, **k: TEMPLATES_MEMIT
    return covs


def batch_requests(targets: dict[str, str], requests: list[dict] = REQUESTS) -> list[dict]:
    """The reference's request dicts with their new targets."""
    return [{**r, "target_new": {"str": targets[r["case_id"]]}} for r in requests]


def recorded_reference(main, run: Callable[[], dict]) -> tuple[dict, list, list]:
    """``run()`` (the reference's ΔW per weight) with its ``compute_z`` / ``compute_ks``
    calls recorded."""
    zs, ks = [], []
    with quiet(), recording(main, "compute_z", zs), recording(main, "compute_ks", ks):
        deltas = run()
    return deltas, zs, ks


def recorded_ours(model, tokenizer, editor, requests, names, records=None):
    """lm-edit's ΔW per weight with its target values and keys recorded."""
    values, keys = [], []
    with recording(editor, "target_values", values), recording(editor, "_keys", keys):
        deltas = weight_delta(model, tokenizer, editor, requests, names, records)
    return deltas, values, keys


def batch_row(editor: str, setting: str, ref: tuple, ours: tuple, names, **extra) -> Row:
    """Compare one batch: ``ref`` from :func:`recorded_reference`, ``ours`` from
    :func:`recorded_ours`."""
    (dw_ref, zs, ks), (dw_ours, our_values, our_keys) = ref, ours
    v_ours = torch.stack([v.target for v in our_values[0][2]], dim=1)
    v_ref = torch.stack([z for _, _, z in zs], dim=1)
    k_diffs = [rel(r[2], mine[2].T) for r, mine in zip(ks, our_keys, strict=True)]
    steps = sorted({v.steps for v in our_values[0][2]})
    return Row(
        editor,
        f"{setting} [steps {steps}]",
        [rel(dw_ref[n], dw_ours[n]) for n in names],
        rel(v_ref, v_ours),
        max(k_diffs),
        extra,
    )


def memit_like_deltas(model, deltas: dict, memit_order: bool) -> dict[str, torch.Tensor]:
    """ΔW from the reference's returned factors: MEMIT's ``adj_k @ resid.T``, EMMET's
    ``resid @ adj_k.T``, both in the weight's layout."""
    out = {}
    for name, (adj_k, resid, *_) in deltas.items():
        upd = adj_k @ resid.T if memit_order else resid @ adj_k.T
        out[name] = upd if upd.shape == model.get_parameter(name).shape else upd.T
    return out


BATCH_NAMES = [f"transformer.h.{layer}.mlp.c_proj.weight" for layer in LAYERS_MEMIT]


def compare_memit(root: Path, model, tokenizer, stats_file: Path, device: str) -> list[Row]:
    """MEMIT on a batch of all requests: reference execute_memit vs editor=memit."""
    rows = []
    requests = batch_requests(TARGETS)
    with reference_code(root / "memit", device):
        memit_main = importlib.import_module("memit.memit_main")
        hparams_cls = importlib.import_module("memit.memit_hparams").MEMITHyperParams
        for setting, (values, extra) in SETTINGS_MEMIT.items():
            overrides = batch_overrides(stats_file, values, extra)
            editor = lm_edit_editor(model, tokenizer, "memit", overrides)
            hand_inputs(memit_main, editor, model)
            hparams = batch_hparams(hparams_cls, values)
            ref = recorded_reference(
                memit_main,
                lambda h=hparams: memit_like_deltas(
                    model, memit_main.execute_memit(model, tokenizer, requests, h), True
                ),
            )
            ours = recorded_ours(model, tokenizer, editor, requests, BATCH_NAMES)
            rows.append(batch_row("memit", setting, ref, ours, BATCH_NAMES))
    return rows


SETTINGS_EMMET: dict[str, tuple[dict[str, Any], dict[str, Any], float]] = {
    # name: (shared v* settings, extra lm-edit overrides, emmet_lambda)
    "emmet_lambda 0.1": (common_values(25, 0.5, 4.0, 0.5), {}, 0.1),
    "emmet_lambda 0": (common_values(25, 0.5, 4.0, 0.5), {}, 0.0),
    "emmet_lambda 0.1, key_average=flat": (
        common_values(25, 0.5, 4.0, 0.5),
        {"key_average": "flat"},
        0.1,
    ),
}


def compare_emmet(root: Path, model, tokenizer, stats_file: Path, device: str) -> list[Row]:
    """EMMET on a batch of all requests: reference execute_emmet vs editor=emmet."""
    rows = []
    requests = batch_requests(TARGETS)
    with reference_code(root / "emmet", device):
        emmet_main = importlib.import_module("emmet.emmet_main")
        hparams_cls = importlib.import_module("emmet.emmet_hparams").EMMETHyperParams
        for setting, (values, extra, lam) in SETTINGS_EMMET.items():
            overrides = batch_overrides(stats_file, values, {"emmet_lambda": lam, **extra})
            editor = lm_edit_editor(model, tokenizer, "emmet", overrides)
            hand_inputs(emmet_main, editor, model, with_keys=True)
            hparams = batch_hparams(
                hparams_cls,
                values,
                calculate_objective_value=False,
                update_norm_lambda=0.0,
                emmet_lambda=lam,
            )
            ref = recorded_reference(
                emmet_main,
                lambda h=hparams: memit_like_deltas(
                    model, emmet_main.execute_emmet(model, tokenizer, requests, h), False
                ),
            )
            ours = recorded_ours(model, tokenizer, editor, requests, BATCH_NAMES)
            rows.append(batch_row("emmet", setting, ref, ours, BATCH_NAMES))
    return rows


# AlphaEdit's second batch: other subjects, on the model edited by the first.
SECOND_BATCH = [
    {"case_id": "colosseum", "prompt": "{} is located in", "subject": "The Colosseum"},
    {"case_id": "volkswagen", "prompt": "{} is a car company from", "subject": "Volkswagen"},
    {"case_id": "jordan", "prompt": "{} plays the sport of", "subject": "Michael Jordan"},
]
SECOND_TARGETS = {"colosseum": "Paris", "volkswagen": "Japan", "jordan": "football"}

SETTINGS_ALPHAEDIT: dict[str, tuple[dict[str, Any], float, float, bool]] = {
    # name: (shared v* settings, nullspace_threshold, L2, the reference's SVD in float64)
    "threshold 0.02, L2 10": (common_values(25, 0.5, 4.0, 0.5), 0.02, 10.0, False),
    "threshold 0.02, L2 1": (common_values(25, 0.5, 4.0, 0.5), 0.02, 1.0, False),
    "threshold 0.02, L2 10, reference P from a float64 SVD": (
        common_values(25, 0.5, 4.0, 0.5),
        0.02,
        10.0,
        True,
    ),
}


def reference_projectors(
    checkout: Path, main, model, tokenizer, hparams, svd64: bool
) -> torch.Tensor:
    """AlphaEdit's ``P`` per layer from its own ``get_project`` (experiments/evaluate.py:
    the SVD of ``C``, singular values below ``nullspace_threshold``) on lm-edit's ``C``,
    decomposed in the model's dtype, or in float64 with ``svd64``."""
    dtype = torch.float64 if svd64 else model.dtype

    def get_cov(*args, **kwargs):
        return main.get_cov(*args, **kwargs).to(dtype)

    namespace = {"torch": torch, "get_cov": get_cov}
    get_project = reference_function(checkout / "experiments/evaluate.py", "get_project", namespace)
    with quiet():
        projectors = [get_project(model, tokenizer, layer, hparams) for layer in LAYERS_MEMIT]
    return torch.stack(projectors).to(model.dtype)


def reference_alphaedit(main, model, tokenizer, requests, hparams, cache_c, projectors):
    """One reference AlphaEdit batch (it edits the model in place and adds the batch's keys
    to ``cache_c``); its ΔW per weight."""
    before = {n: model.get_parameter(n).detach().clone() for n in BATCH_NAMES}
    main.apply_AlphaEdit_to_model(
        model, tokenizer, requests, hparams, cache_c=cache_c, P=projectors
    )
    return {n: model.get_parameter(n).detach() - before[n] for n in BATCH_NAMES}


def compare_alphaedit(root: Path, model, tokenizer, stats_file: Path, device: str) -> list[Row]:
    """AlphaEdit on two batches in sequence (all four requests, then three other subjects):
    reference apply_AlphaEdit_to_model vs editor=alphaedit, each on its own edited model."""
    rows = []
    batches = {
        "batch 1": batch_requests(TARGETS),
        "batch 2": batch_requests(SECOND_TARGETS, SECOND_BATCH),
    }
    original = {n: model.get_parameter(n).detach().clone() for n in BATCH_NAMES}
    with reference_code(root / "alphaedit", device):
        main = importlib.import_module("AlphaEdit.AlphaEdit_main")
        hparams_cls = importlib.import_module("AlphaEdit.AlphaEdit_hparams").AlphaEditHyperParams
        for setting, (values, threshold, l2, svd64) in SETTINGS_ALPHAEDIT.items():
            nullspace = {"nullspace_threshold": threshold, "nullspace_lambda": l2}
            overrides = batch_overrides(stats_file, values, nullspace)
            editor = lm_edit_editor(model, tokenizer, "alphaedit", overrides)
            hand_inputs(main, editor, model)
            hparams = batch_hparams(
                hparams_cls, values, model_name="-", nullspace_threshold=threshold, L2=l2
            )
            checkout = root / "alphaedit"
            projectors = reference_projectors(checkout, main, model, tokenizer, hparams, svd64)
            p_diff = max(
                rel(projectors[i], editor._projectors[layer])
                for i, layer in enumerate(LAYERS_MEMIT)
            )
            cache_c = torch.zeros_like(projectors)
            refs, grams = [], []
            for requests in batches.values():
                run = partial(
                    reference_alphaedit, main, model, tokenizer, requests, hparams, cache_c
                )
                refs.append(recorded_reference(main, partial(run, projectors)))
                grams.append(cache_c.clone())
            with torch.no_grad():
                for name, weight in original.items():
                    model.get_parameter(name).copy_(weight)
            records: list = []
            for (label, requests), ref, gram in zip(batches.items(), refs, grams, strict=True):
                ours = recorded_ours(model, tokenizer, editor, requests, BATCH_NAMES, records)
                past = editor.past_gram
                kp = max(rel(gram[i], past[layer]) for i, layer in enumerate(LAYERS_MEMIT))
                name = f"{setting}, {label}"
                rows.append(batch_row("alphaedit", name, ref, ours, BATCH_NAMES, P=p_diff, Kp=kp))
            for record in reversed(records):
                record.undo(model)
    return rows


# PMET: its editor defaults (editors/pmet.yaml: 30 steps, lr 0.2, kl 1, with memit.yaml's
# clamp and decay), MEMIT's v* settings and a long optimisation; in the last two the
# reference's argmax rule fires, so they are also run with lm-edit's rule switched off.
NO_ARGMAX_RULE = {"argmax_nll_factor": None}
SETTINGS_PMET: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "pmet defaults (30 steps, lr 0.2, clamp 0.75, kl 1)": (
        common_values(30, 0.2, 0.75, 0.5, kl=1.0),
        {},
    ),
    "MEMIT's v* settings (25 steps, lr 0.5, clamp 4)": (common_values(25, 0.5, 4.0, 0.5), {}),
    "MEMIT's v* settings, argmax_nll_factor=none": (
        common_values(25, 0.5, 4.0, 0.5),
        NO_ARGMAX_RULE,
    ),
    "long (60 steps, lr 0.5, clamp 4, kl 1)": (common_values(60, 0.5, 4.0, 0.5, kl=1.0), {}),
    "long, argmax_nll_factor=none": (common_values(60, 0.5, 4.0, 0.5, kl=1.0), NO_ARGMAX_RULE),
}
PMET_MLP = "transformer.h.{}.mlp.c_proj"
PMET_ATTN = "transformer.h.{}.attn.c_proj"


def pmet_hparams(hparams_cls, values: dict[str, Any]):
    """The reference's PMET hyperparameters: GPT-2's modules in the roles of its GPT-J
    file's (``mlp_module_tmp`` the rewritten MLP output projection, ``attn_module_tmp``
    the attention output projection), only the MLP rewritten."""
    modules = {**GPT2_HPARAMS, "mlp_module_tmp": PMET_MLP, "attn_module_tmp": PMET_ATTN}
    return hparams_cls(
        layers=LAYERS_MEMIT,
        layer_selection="all",
        mom2_update_weight=MEMIT_LAMBDA,
        nll_loss_factor=1.0,
        rewrite_module_tmps=[PMET_MLP],
        **modules,
        **values,
    )


def compare_pmet(root: Path, model, tokenizer, stats_file: Path, device: str) -> list[Row]:
    """PMET on a batch of all requests: reference execute_pmet vs editor=pmet."""
    rows = []
    requests = batch_requests(TARGETS)
    with reference_code(root / "pmet", device):
        main = importlib.import_module("pmet.pmet_main")
        hparams_cls = importlib.import_module("pmet.pmet_hparams").PMETHyperParams
        for setting, (values, extra) in SETTINGS_PMET.items():
            overrides = batch_overrides(stats_file, values, extra)
            editor = lm_edit_editor(model, tokenizer, "pmet", overrides)
            hand_inputs(main, editor, model)
            hparams = pmet_hparams(hparams_cls, values)
            zs, ks = [], []
            with quiet(), recording(main, "compute_zs", zs), recording(main, "compute_ks", ks):
                dw_ref = main.execute_pmet(model, tokenizer, requests, hparams)
            dw_ours, our_values, our_keys = recorded_ours(
                model, tokenizer, editor, requests, BATCH_NAMES
            )
            v_ref = torch.stack([z_mlp for _, _, (_, z_mlp) in zs], dim=1)
            v_ours = torch.stack([v.target for v in our_values[0][2]], dim=1)
            k_diffs = [
                rel(ref[2][PMET_MLP], mine[2].T) for ref, mine in zip(ks, our_keys, strict=True)
            ]
            steps = sorted({v.steps for v in our_values[0][2]})
            rows.append(
                Row(
                    "pmet",
                    f"{setting} [steps {steps}]",
                    [rel(dw_ref[n], dw_ours[n]) for n in BATCH_NAMES],
                    rel(v_ref, v_ours),
                    max(k_diffs),
                )
            )
    return rows


def check_rome_batch(model, tokenizer, stats_file: Path) -> list[Row]:
    """lm-edit's ROME on all requests in one batch (the reference edits one at a time, so
    there is nothing to compare with): the batched equality solve must write every
    request's residual on its bare-prompt key exactly, ``ΔWᵀ k_i = v*_i − v_i``."""
    from lm_edit.editors.locate.keys import plain_keys

    layer = LAYERS_ROME[0]
    weight = f"transformer.h.{layer}.mlp.c_proj.weight"
    overrides = {
        **common_values(25, 0.5, 4.0, 0.5),
        "layers": [layer],
        "early_stop_on": "loss",
        "context_templates": TEMPLATES_ROME,
        "stats_source": str(stats_file),
        "stats_ridge": 0.0,
    }
    editor = lm_edit_editor(model, tokenizer, "rome", overrides)
    requests = [{**r, "target_new": {"str": TARGETS[r["case_id"]]}} for r in REQUESTS]
    ours = weight_delta(model, tokenizer, editor, requests, [weight])[weight]
    found = editor.target_values(model, tokenizer, layer, edit_requests(requests))
    residual = torch.stack([v.target - v.initial for v in found], dim=1)
    keys = plain_keys(model, tokenizer, editor.anatomy, layer, edit_requests(requests))
    written = ours.double().T @ keys.double()
    return [
        Row(
            "rome",
            f"batch of {len(requests)} (lm-edit only): ‖ΔWᵀK − R‖/‖R‖",
            [rel(residual, written)],
            float("nan"),
            float("nan"),
        )
    ]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the reference's progress prints."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def main() -> None:
    """Build the shared inputs, run the comparisons, print the table."""
    root = reference_root()
    dtype = getattr(torch, ARGS["dtype"])
    device = "cpu"
    os.environ.setdefault("LM_EDIT_CACHE", tempfile.mkdtemp(prefix="lm-edit-refcmp-"))
    tokenizer = train_tokenizer()
    model = build_model(len(tokenizer), dtype)
    stats_file = stats_text(Path(os.environ["LM_EDIT_CACHE"]) / "stats.txt")
    editors = ARGS["editors"].split(",")
    print("Reference patches:")
    for checkout in editors:
        for file, old, new, _ in REFERENCE_PATCHES[checkout]:
            print(f"  {checkout}/{file}: {old!r} -> {new.format(device=device)!r}")
    rows: list[Row] = []
    if "rome" in editors:
        rows += compare_rome(root, model, tokenizer, stats_file, device)
        rows += check_rome_batch(model, tokenizer, stats_file)
    if "r-rome" in editors:
        rows += compare_rome(root, model, tokenizer, stats_file, device, "r-rome")
    if "memit" in editors:
        rows += compare_memit(root, model, tokenizer, stats_file, device)
    if "emmet" in editors:
        rows += compare_emmet(root, model, tokenizer, stats_file, device)
    if "alphaedit" in editors:
        rows += compare_alphaedit(root, model, tokenizer, stats_file, device)
    if "pmet" in editors:
        rows += compare_pmet(root, model, tokenizer, stats_file, device)
    print_table(rows, ARGS["dtype"])


def print_table(rows: list[Row], dtype: str) -> None:
    """The summary as a Markdown table."""
    print(f"\n| editor | setting ({dtype}) | rel. diff ΔW per layer | v* | k | other |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        dws = ", ".join(f"{d:.1e}" for d in row.dw)
        other = ", ".join(f"{k} {v:.1e}" for k, v in row.extra.items())
        print(f"| {row.editor} | {row.setting} | {dws} | {row.v:.1e} | {row.k:.1e} | {other} |")


if __name__ == "__main__":
    main()
