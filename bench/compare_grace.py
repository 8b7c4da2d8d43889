"""Run lm-edit's GRACE and EasyEdit's GRACE (``easyeditor/models/grace``) side by side on
the tiny random Llama and GPT-2 of the tests, and print how their codebooks (keys, values,
radii, labels) and the edited models' outputs differ.

The reference code is not part of lm-edit. Clone it outside the repository,
``git clone https://github.com/zjunlp/EasyEdit`` (the comparison was made at commit
14cea82), or extract the four files from a bare mirror::

    git --git-dir=<mirror> archive HEAD easyeditor/models/grace | tar -x -C <dir>

and pass the folder that holds ``easyeditor/`` with ``--reference-dir`` (or
``LM_EDIT_REFERENCE_DIR``; a folder with the checkout in ``easyedit/`` is accepted too).
Only ``GRACE.py``, ``grace_main.py``, ``grace_hparams.py`` and ``utils.py`` of
``easyeditor/models/grace`` are read: each variant R0-R5 below copies them into a package
in a temporary folder and patches them textually (``BASE_PATCHES``: imports of the rest of
EasyEdit and the device; then the behaviour patches, each switching one EasyEdit behaviour
to lm-edit's). Every patch is a ``(file, old, new, count)`` entry, checked to occur exactly
``count`` times and printed at start; the imported modules are forgotten after the run.

Both sides start from the same float32 model (``tests.conftest.make_tiny_model``), edit the
same seven requests one after another (they add, split, expand and relabel keys) at the
same module with the same hyperparameters, and are re-seeded with the same seed before
each edit (lm-edit's edit seed gives ``torch.manual_seed(seed)`` per batch of one; EasyEdit
draws a cold value from the global random state inside the adaptor's forward). Settings
S1-S8 vary the family, block, module, ``eps``, ``eps_expand`` and ``val_init``. For each
setting and variant the script prints per edit the key counts and the relative differences
of keys and values (largest over keys of ``‖a − b‖ / ‖b‖``), the largest radius difference
and whether the labels agree; then, on the final models, which edits take (the target's
first token is the argmax), the targets' log-probabilities and the layer outputs on edit
and unrelated prompts. X1 repeats S2/R5 without re-seeding EasyEdit (its own use); X2 shows
the error of ``torch.cdist``'s matrix-product path, which EasyEdit takes from 26 keys on.
A Markdown table summarises the run. CPU only, a few minutes::

    OMP_NUM_THREADS=1 python bench/compare_grace.py --reference-dir <dir> [--only S2] \\
        [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from lm_edit.data.requests import EditRequest

from easyedit_copy import (  # first: puts this checkout's lm_edit on sys.path
    Patch,
    comparison_parser,
    find_checkout,
    patched_packages,
)

GRACE_DIR = Path("easyeditor/models/grace")
GRACE_FILES = ("GRACE.py", "grace_main.py", "grace_hparams.py", "utils.py")
PACKAGE_PREFIX = "easyedit_grace_"
SEED = 0


# -- textual patches of the reference copy: (file, old, new, expected count) --------------
# Needed to import the four files on their own on CPU; no change of behaviour.
BASE_PATCHES: list[Patch] = [
    # utils.py imports EasyEdit's multimodal helpers, unused by the text editor
    (
        "utils.py",
        "from ...util.vl_utils import (\n    build_target_labels,\n    count_media_items,\n"
        "    get_batch_file_type,\n    normalize_multimodal_batch,\n"
        "    prepend_qwen_vl_image_tokens_if_missing,\n)\n",
        "",
        1,
    ),
    # EasyEdit's HyperParams base class only adds the from_hparams helpers
    (
        "grace_hparams.py",
        "from ...util.hparams import HyperParams",
        "HyperParams = object  # patched: EasyEdit's base class only adds from_hparams helpers",
        1,
    ),
    # nethook is imported but not used by apply_grace_to_model
    ("grace_main.py", "from ...util import nethook\n", "", 1),
    # everything runs on the CPU
    (
        "grace_main.py",
        "from ...util.device import normalize_device",
        "normalize_device = lambda device: 'cpu'  # patched: CPU only",
        1,
    ),
]

# Behaviour patches, each switching one EasyEdit behaviour to lm-edit's (editors/README.md,
# "Differences from EasyEdit" and "Against the reference code").
#
# EasyEdit bug: every edit wraps the layer anew and sets requires_grad=False on all model
# parameters, the codebook's values included, so the first edit that expands an existing
# key (and trains no new value) raises "element 0 of tensors does not require grad".
# The patch makes the values trainable again (in GRACE.edit and GRACEMultimodal.edit).
P_GRAD: Patch = (
    "GRACE.py",
    '        setattr(eval(f"self.model.{self.layer}"), "training", True)\n',
    '        setattr(eval(f"self.model.{self.layer}"), "training", True)\n'
    '        _ad = eval(f"self.model.{self.layer}")  # patched: values trainable again\n'
    '        if "keys" in _ad.__dict__: _ad.values.requires_grad_(True)\n',
    2,
)
# EasyEdit bug: add_key prepends the new label while it appends the key and value, so from
# the second key on a query is compared with another key's answer. The authors' code and
# lm-edit append.
P_ORDER: Patch = (
    "GRACE.py",
    "key_labels =  [self.edit_label] + self.key_labels",
    "key_labels =  self.key_labels + [self.edit_label]",
    1,
)
# lm-edit's documented choice: labels are the target (EasyEdit compares the mean of the
# label token ids, so the same answer after prompts of different lengths differs, and
# different answers can match). The patch compares the target tokens.
P_LABEL: Patch = (
    "GRACE.py",
    "return edit_label.float().mean() == key_label.float().mean()",
    "return torch.equal(edit_label[edit_label != -100], key_label[key_label != -100])",
    1,
)
# lm-edit's documented choice: a split never enlarges the older key's radius (EasyEdit
# sets it to d/2 - 1e-5 even when it was smaller).
P_SPLIT: Patch = (
    "GRACE.py",
    "self.epsilons[nearest_key] = (smallest_distance / 2) - 1e-5 # Cut nearest epsilon in half",
    "self.epsilons[nearest_key] = torch.minimum(self.epsilons[nearest_key], "
    "(smallest_distance / 2) - 1e-5)",
    1,
)
# lm-edit's documented choice: a query that coincides with a key of another answer
# (d/2 - 1e-5 <= 0) relabels that key and gives it the new value (EasyEdit's split leaves
# both radii at zero or below, so neither edit fires).
_IF = " " * 20  # indentation of the conflict branch in GRACEAdapter.forward
_THEN = " " * 24
P_RELABEL: Patch = (
    "GRACE.py",
    f"{_IF}if not self.label_match(self.edit_label, self.key_labels[nearest_key]):\n"
    f"{_THEN}self.keys, self.values, self.epsilons, self.key_labels, self.edit_ids"
    " = self.add_key(query, new_value,self.edit_id)\n",
    f"{_IF}if (not self.label_match(self.edit_label, self.key_labels[nearest_key]))"
    " and float(smallest_distance) / 2 - 1e-5 <= 0:\n"
    f"{_THEN}self.key_labels[nearest_key] = self.edit_label  # patched: relabel\n"
    f"{_THEN}with torch.no_grad(): self.values[nearest_key] = new_value.detach()[0]\n"
    f"{_IF}elif not self.label_match(self.edit_label, self.key_labels[nearest_key]):\n"
    f"{_THEN}self.keys, self.values, self.epsilons, self.key_labels, self.edit_ids"
    " = self.add_key(query, new_value,self.edit_id)\n",
    1,
)
BEHAVIOUR_PATCHES = {
    "P_GRAD": P_GRAD,
    "P_ORDER": P_ORDER,
    "P_LABEL": P_LABEL,
    "P_SPLIT": P_SPLIT,
    "P_RELABEL": P_RELABEL,
}

# The reference variants: EasyEdit as is, then one more behaviour patch each.
VARIANTS: dict[str, list[Patch]] = {
    "R0 EasyEdit as is": [],
    "R1 +values trainable (P_GRAD)": [P_GRAD],
    "R2 R1+labels appended (P_ORDER)": [P_GRAD, P_ORDER],
    "R3 R2+label=target tokens (P_LABEL)": [P_GRAD, P_ORDER, P_LABEL],
    "R4 R3+split never enlarges (P_SPLIT)": [P_GRAD, P_ORDER, P_LABEL, P_SPLIT],
    "R5 R4+relabel at d/2<=1e-5 (P_RELABEL)": [P_GRAD, P_ORDER, P_LABEL, P_SPLIT, P_RELABEL],
}
ALIGNED = "R5 R4+relabel at d/2<=1e-5 (P_RELABEL)"

# -- inputs -------------------------------------------------------------------------------
# (case id, prompt, subject, target_new, target_true), edited in this order
REQUESTS = [
    ("E0", "The city named after Eiffel Tower", "Eiffel Tower", "Rome", "Paris"),
    ("E1", "The country known for Toyota", "Toyota", "Germany", "Japan"),
    ("E2", "The town named after Eiffel Tower", "Eiffel Tower", "Paris", None),
    ("E3", "A city named after Eiffel Tower", "Eiffel Tower", "Rome", None),
    ("E4", "The big city named after Eiffel Tower", "Eiffel Tower", "Rome", None),
    ("E5", "The nation known for Toyota", "Toyota", "Germany", None),
    ("E6", "The city named after Eiffel Tower", "Eiffel Tower", "Paris", None),
]
UNRELATED = [
    "Michael Jordan plays the sport of",
    "Danielle Darrieux is a native speaker of",
    "The Colosseum is located in the city of",
]


@dataclass(frozen=True)
class Setting:
    """One comparison: model family, wrapped module (both sides' names), hyperparameters."""

    name: str
    family: str
    layer: int
    module: str  # lm-edit's module name
    easyedit_param: str  # EasyEdit's inner_params entry
    eps: float = 1.0
    eps_expand: str = "coverage"
    val_init: str = "cold"
    edit_lr: float = 1.0
    n_iter: int = 50
    n_requests: int = len(REQUESTS)

    @property
    def code(self) -> str:
        return self.name.split()[0]

    @property
    def module_path(self) -> str:
        """The wrapped module's dotted path."""
        return self.easyedit_param.rsplit(".", 1)[0].replace("[", ".").replace("]", "")


LLAMA_OUT: dict[str, Any] = dict(
    family="llama", layer=3, module="mlp_out", easyedit_param="model.layers[3].mlp.down_proj.weight"
)
LLAMA_LAYER1_OUT: dict[str, Any] = dict(
    family="llama", layer=1, module="mlp_out", easyedit_param="model.layers[1].mlp.down_proj.weight"
)
GPT2_IN: dict[str, Any] = dict(
    family="gpt2", layer=3, module="mlp_in", easyedit_param="transformer.h[3].mlp.c_fc.weight"
)
SETTINGS = [
    Setting("S1 llama down_proj eps=1 (EasyEdit defaults)", **LLAMA_OUT),
    Setting("S2 llama down_proj eps=3.5", eps=3.5, **LLAMA_OUT),
    Setting("S3 llama eps=3.5 moving_average", eps=3.5, eps_expand="moving_average", **LLAMA_OUT),
    Setting("S4 llama eps=3.5 warm", eps=3.5, val_init="warm", **LLAMA_OUT),
    Setting("S5 gpt2 c_fc eps=1 n_iter=50", **GPT2_IN),
    Setting("S6 llama eps=100 (first 3 edits)", eps=100.0, n_requests=3, **LLAMA_OUT),
    Setting(
        "S7 llama layer1 down_proj eps=100 (first edit)",
        eps=100.0,
        n_requests=1,
        **LLAMA_LAYER1_OUT,
    ),
    Setting("S8 llama layer1 down_proj eps=3.5", eps=3.5, **LLAMA_LAYER1_OUT),
]
X1_NAME = f"X1 {SETTINGS[1].name}, R5 without re-seeding before each edit (global RNG runs on)"


# -- the reference code ------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceVariant:
    """One patched copy of EasyEdit's GRACE."""

    grace_main: ModuleType
    grace: ModuleType
    hparams_class: type


@contextlib.contextmanager
def reference_variants(checkout: Path) -> Iterator[dict[str, ReferenceVariant]]:
    """The variants R0-R5 imported from patched copies in a temporary folder; the imported
    modules are forgotten after."""
    variants = {name: BASE_PATCHES + patches for name, patches in VARIANTS.items()}
    with patched_packages(
        checkout, GRACE_DIR, GRACE_FILES, variants, PACKAGE_PREFIX, "compare_grace"
    ) as packages:
        yield {
            name: ReferenceVariant(
                grace_main=importlib.import_module(f"{package}.grace_main"),
                grace=importlib.import_module(f"{package}.GRACE"),
                hparams_class=importlib.import_module(f"{package}.grace_hparams").GraceHyperParams,
            )
            for name, package in packages.items()
        }


def print_patches() -> None:
    """The patches and the variants built from them."""
    names = {patch: name for name, patch in BEHAVIOUR_PATCHES.items()}
    print("Reference patches (file: old -> new, expected count):")
    for file, old, new, count in BASE_PATCHES:
        print(f"  base  {file}: {old!r} -> {new!r} ({count}x)")
    for name, (file, old, new, count) in BEHAVIOUR_PATCHES.items():
        print(f"  {name}  {file}: {old!r} -> {new!r} ({count}x)")
    for variant, patches in VARIANTS.items():
        print(f"  {variant}: base + {[names[p] for p in patches]}")


# -- the two sides ------------------------------------------------------------------------
@dataclass
class Codebook:
    """Keys, values, radii and labels (the target strings) after an edit."""

    keys: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    values: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    radii: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    labels: list[str] = field(default_factory=list)


@dataclass
class StreamRun:
    """A model after the edits, its codebook after each edit, the actions and losses."""

    model: Any
    books: list[Codebook]
    actions: list[str]
    losses: list[float]


def edit_requests(n: int) -> list[EditRequest]:
    from lm_edit.data.requests import EditRequest

    return [EditRequest(*fields) for fields in REQUESTS[:n]]


def easyedit_codebook(adapter: Any, tokenizer: Any) -> Codebook:
    """The codebook of an EasyEdit ``GRACEAdapter`` (labels decoded from its label ids)."""
    if "keys" not in adapter.__dict__:
        return Codebook()
    labels = [tokenizer.decode(lab[lab != -100].tolist()).strip() for lab in adapter.key_labels]
    return Codebook(
        keys=adapter.keys.detach().clone().reshape(len(adapter.key_labels), -1),
        values=adapter.values.detach().clone(),
        radii=adapter.epsilons.detach().clone().reshape(-1),
        labels=labels,
    )


def lm_edit_codebook(adaptor: Any) -> Codebook:
    """The codebook of lm-edit's ``CodebookAdaptor``."""
    return Codebook(
        keys=adaptor.keys.detach().clone(),
        values=adaptor.values.detach().clone(),
        radii=adaptor.radii.detach().clone(),
        labels=list(adaptor.labels),
    )


def infer_action(before: Codebook, after: Codebook, eps: float) -> str:
    """What an EasyEdit edit did to the codebook, named as lm-edit's ``key_actions``."""
    n_before, n_after = len(before.labels), len(after.labels)
    if n_after == n_before + 1:
        radii_changed = not torch.equal(before.radii, after.radii[:n_before])
        if n_before and (radii_changed or float(after.radii[-1]) != eps):
            return "split"
        return "add"
    if n_after == n_before and n_before:
        changed = not torch.equal(before.radii, after.radii)
        if before.labels != after.labels and not changed:
            return "relabel"
        return "expand" if changed else "expand(inside)"
    return f"?{n_before}->{n_after}"


def run_easyedit(
    variant: ReferenceVariant, base: Any, tokenizer: Any, setting: Setting, reseed: bool = True
) -> StreamRun:
    """EasyEdit's ``apply_grace_to_model`` on each request in turn, on a copy of ``base``;
    re-seeded before every edit, or before the first only (``reseed=False``)."""
    model = copy.deepcopy(base)
    hparams = variant.hparams_class(
        edit_lr=setting.edit_lr,
        n_iter=setting.n_iter,
        eps=setting.eps,
        dist_fn="euc",
        val_init=setting.val_init,
        val_train="sgd",
        val_reg="None",
        reg="early_stop",
        replacement="replace_last",
        eps_expand=setting.eps_expand,
        num_pert=8,
        dropout=0.0,
        inner_params=[setting.easyedit_param],
        device=0,
        alg_name="GRACE",
        model_name="tiny",
    )
    run = StreamRun(model, [], [], [])
    for request in edit_requests(setting.n_requests):
        module = model.get_submodule(setting.module_path)
        wrapped = isinstance(module, variant.grace.GRACEAdapter)
        before = easyedit_codebook(module, tokenizer) if wrapped else Codebook()
        if reseed or not run.books:
            torch.manual_seed(SEED)
        error = None
        try:
            editor, _ = variant.grace_main.apply_grace_to_model(
                model,
                tokenizer,
                [{"prompt": request.prompt, "target_new": request.target_new}],
                hparams,
            )
            run.losses.append(float(editor.loss.detach()))
        except RuntimeError as e:  # R0: an expand finds no trainable value
            error = str(e).split("\n")[0]
            run.losses.append(float("nan"))
        adapter = model.get_submodule(setting.module_path)
        adapter.training = False
        after = easyedit_codebook(adapter, tokenizer)
        run.actions.append(
            f"CRASH({error[:40]})" if error else infer_action(before, after, setting.eps)
        )
        run.books.append(after)
    return run


def run_lm_edit(base: Any, tokenizer: Any, setting: Setting) -> StreamRun:
    """lm-edit's GRACE on each request in turn (batches of one), on a copy of ``base``."""
    from lm_edit.stream import EditStream

    model = copy.deepcopy(base)
    stream = EditStream.create(
        model,
        tokenizer,
        "grace",
        seed=SEED,
        layer=setting.layer,
        module=setting.module,
        eps=setting.eps,
        eps_expand=setting.eps_expand,
        val_init=setting.val_init,
        edit_lr=setting.edit_lr,
        n_iter=setting.n_iter,
    )
    run = StreamRun(model, [], [], [])
    for request in edit_requests(setting.n_requests):
        (record,) = stream.apply([request], batch_size=1, progress=False)
        run.actions += record.details["key_actions"]
        run.losses += record.details["train_loss"]
        run.books.append(lm_edit_codebook(model.get_submodule(setting.module_path)))
    return run


# -- probes -------------------------------------------------------------------------------
@dataclass
class Probe:
    """The wrapped module's input and output at every position, the log-probabilities at
    every position, and the token ids."""

    inputs: torch.Tensor
    outputs: torch.Tensor
    log_probs: torch.Tensor
    ids: torch.Tensor


def probe(model: Any, tokenizer: Any, path: str, text: str, adapter_class: Any = None) -> Probe:
    """Run ``text`` through ``model``; an EasyEdit adapter queries the last token (as after
    ``GRACE.generate``, which resets ``key_id`` to -1)."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    module = model.get_submodule(path)
    if adapter_class is not None and isinstance(module, adapter_class):
        module.training = False
        module.key_id = -1
    seen: dict[str, torch.Tensor] = {}
    pre = module.register_forward_pre_hook(
        lambda m, args: seen.__setitem__("x", args[0][0].detach().clone())
    )
    post = module.register_forward_hook(
        lambda m, args, out: seen.__setitem__("y", out[0].detach().clone())
    )
    try:
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
    finally:
        pre.remove()
        post.remove()
    return Probe(seen["x"], seen["y"], F.log_softmax(logits.float(), -1), ids[0])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest ``‖a_i − b_i‖ / ‖b_i‖`` over rows (nan if the shapes differ)."""
    if a.shape != b.shape:
        return float("nan")
    denominator = b.norm(dim=-1).clamp_min(1e-30)
    return float(((a - b).norm(dim=-1) / denominator).max()) if a.numel() else 0.0


def fired_positions(book: Codebook, inputs: torch.Tensor) -> list[int]:
    """Positions whose module input lies within a key's radius (lm-edit's per-position
    query)."""
    if not book.labels:
        return []
    dist = torch.cdist(
        inputs.float(), book.keys.float(), compute_mode="donot_use_mm_for_euclid_dist"
    )
    nearest_dist, nearest = dist.min(1)
    return torch.nonzero(nearest_dist <= book.radii[nearest]).flatten().tolist()


def first_target_token(tokenizer: Any, target: str) -> int:
    return tokenizer(" " + target)["input_ids"][0]


# -- one setting --------------------------------------------------------------------------
def compare_codebooks(ours: list[Codebook], theirs: list[Codebook]) -> list[dict[str, Any]]:
    """Per edit: key counts, relative differences of keys and values, largest radius
    difference (where the counts agree) and the labels."""
    rows = []
    for a, b in zip(ours, theirs, strict=True):
        same_size = len(a.labels) == len(b.labels)
        rows.append(
            dict(
                n_lm=len(a.labels),
                n_ee=len(b.labels),
                keys=rel(a.keys, b.keys) if same_size else None,
                values=rel(a.values, b.values) if same_size else None,
                radii=float((a.radii - b.radii).abs().max()) if same_size and a.labels else None,
                labels_equal=a.labels == b.labels,
                lm_labels=a.labels,
                ee_labels=b.labels,
            )
        )
    return rows


def compare_outputs(
    ours: StreamRun,
    theirs: StreamRun,
    base: Any,
    tokenizer: Any,
    setting: Setting,
    adapter_class: Any,
) -> list[dict[str, Any]]:
    """The final models on the edit prompts and the unrelated ones: layer outputs, changed
    positions, target log-probabilities and takes (edits), logits against the unedited
    model (unrelated)."""
    path = setting.module_path
    texts = [(r.prompt, r.target_new) for r in edit_requests(setting.n_requests)]
    rows = []
    for text, target in texts + [(u, None) for u in UNRELATED]:
        lm = probe(ours.model, tokenizer, path, text)
        ee = probe(theirs.model, tokenizer, path, text, adapter_class)
        unedited = probe(base, tokenizer, path, text)
        row: dict[str, Any] = dict(
            text=text,
            target=target,
            y_rel=rel(lm.outputs, ee.outputs),
            y_rel_last=rel(lm.outputs[-1:], ee.outputs[-1:]),
            lm_changed_pos=torch.nonzero((lm.outputs != unedited.outputs).any(-1))
            .flatten()
            .tolist(),
            ee_changed_pos=torch.nonzero((ee.outputs != unedited.outputs).any(-1))
            .flatten()
            .tolist(),
            lm_fired=fired_positions(ours.books[-1], lm.inputs),
            n_tokens=len(lm.ids),
        )
        if target is not None:
            token = first_target_token(tokenizer, target)
            row.update(
                lp_lm=float(lm.log_probs[-1, token]),
                lp_ee=float(ee.log_probs[-1, token]),
                lp_base=float(unedited.log_probs[-1, token]),
                take_lm=int(lm.log_probs[-1].argmax()) == token,
                take_ee=int(ee.log_probs[-1].argmax()) == token,
            )
        else:
            row.update(
                lp_lm_vs_base=float((lm.log_probs[-1] - unedited.log_probs[-1]).abs().max()),
                lp_ee_vs_base=float((ee.log_probs[-1] - unedited.log_probs[-1]).abs().max()),
            )
        rows.append(row)
    return rows


def teacher_forced_fired(ours: StreamRun, tokenizer: Any, setting: Setting) -> list[dict]:
    """Positions of prompt + target (teacher-forced) at which lm-edit's codebook fires."""
    rows = []
    for request in edit_requests(setting.n_requests):
        whole = request.prompt + " " + request.target_new
        lm = probe(ours.model, tokenizer, setting.module_path, whole)
        start = len(tokenizer(request.prompt)["input_ids"])
        rows.append(
            dict(
                case=request.case_id,
                start=start,
                lm_fired=fired_positions(ours.books[-1], lm.inputs),
            )
        )
    return rows


def off_last_token_keys(
    ours: StreamRun, tokenizer: Any, setting: Setting, probes: list[dict]
) -> list[tuple]:
    """For prompts where lm-edit fires off the last token: (text, position, token, key
    label, distance, radius) of each firing position."""
    found = []
    book = ours.books[-1]
    for row in probes:
        if row["lm_fired"] in ([], [row["n_tokens"] - 1]):
            continue
        lm = probe(ours.model, tokenizer, setting.module_path, row["text"])
        dist = torch.cdist(lm.inputs, book.keys, compute_mode="donot_use_mm_for_euclid_dist")
        for pos in row["lm_fired"]:
            key = int(dist[pos].argmin())
            token = tokenizer.convert_ids_to_tokens([int(lm.ids[pos])])[0]
            found.append(
                (
                    row["text"][:24],
                    pos,
                    token,
                    book.labels[key],
                    round(float(dist[pos, key]), 3),
                    round(float(book.radii[key]), 3),
                )
            )
    return found


def sticky_key_id_takes(theirs: StreamRun, tokenizer: Any, setting: Setting) -> list[bool]:
    """Which edits take in EasyEdit with ``key_id`` left where the last edit put it (its
    teacher-forced evaluation does not reset it)."""
    requests = edit_requests(setting.n_requests)
    adapter = theirs.model.get_submodule(setting.module_path)
    takes = []
    for request in requests:
        ids = tokenizer(request.prompt, return_tensors="pt")["input_ids"]
        adapter.key_id = torch.tensor(len(tokenizer(requests[-1].prompt)["input_ids"]) - 1)
        with torch.no_grad():
            log_probs = F.log_softmax(theirs.model(input_ids=ids).logits[0, -1].float(), -1)
        takes.append(int(log_probs.argmax()) == first_target_token(tokenizer, request.target_new))
    return takes


def compare_setting(
    setting: Setting,
    tokenizer: Any,
    variants: dict[str, ReferenceVariant],
    reseed: bool = True,
) -> dict[str, Any]:
    """lm-edit once, each reference variant on the same model and requests."""
    from tests.conftest import make_tiny_model

    base = make_tiny_model(setting.family, len(tokenizer))
    ours = run_lm_edit(base, tokenizer, setting)
    result: dict[str, Any] = {
        "setting": setting.name,
        "lm_actions": ours.actions,
        "lm_losses": ours.losses,
        "variants": {},
    }
    for name, variant in variants.items():
        theirs = run_easyedit(variant, base, tokenizer, setting, reseed)
        probes = compare_outputs(ours, theirs, base, tokenizer, setting, variant.grace.GRACEAdapter)
        result["variants"][name] = dict(
            diag=off_last_token_keys(ours, tokenizer, setting, probes),
            sticky_takes=sticky_key_id_takes(theirs, tokenizer, setting),
            lm_radii=ours.books[-1].radii.tolist(),
            ee_radii=theirs.books[-1].radii.tolist(),
            ee_actions=theirs.actions,
            ee_losses=theirs.losses,
            per_edit=compare_codebooks(ours.books, theirs.books),
            probes=probes,
            teacher_forced=teacher_forced_fired(ours, tokenizer, setting),
        )
    return result


def cdist_errors() -> list[dict[str, float]]:
    """X2: a key's distance to itself by ``torch.cdist``'s default (matrix-product path from
    more than 25 rows, as EasyEdit's ``cdist_float32``) and pairwise (lm-edit)."""
    torch.manual_seed(1)
    keys = torch.randn(30, 64) * 9 / 8
    rows = []
    for n in (25, 26, 30):
        easyedit = torch.cdist(keys[:n], keys[:1], p=2)
        pairwise = torch.cdist(keys[:n], keys[:1], p=2, compute_mode="donot_use_mm_for_euclid_dist")
        rows.append(
            dict(
                n_keys=n,
                easyedit_self=float(easyedit[0, 0]),
                lm_edit_self=float(pairwise[0, 0]),
                max_diff=float((easyedit - pairwise).abs().max()),
            )
        )
    return rows


# -- output -------------------------------------------------------------------------------
def fmt(x: Any) -> str:
    if x is None:
        return "  -   "
    if isinstance(x, float):
        return f"{x:.1e}"
    return str(x)


def print_setting(result: dict[str, Any]) -> None:
    """Every figure of one setting, variant by variant."""
    print(f"\n=== {result['setting']}")
    print(f"lm-edit actions: {result['lm_actions']}  losses: {result['lm_losses']}")
    for name, v in result["variants"].items():
        per_edit = v["per_edit"]
        edits = [p for p in v["probes"] if p["target"] is not None]
        unrelated = [p for p in v["probes"] if p["target"] is None]
        print(f"  [{name}] actions {v['ee_actions']}")
        print(
            "     per edit n_keys lm/ee: " + " ".join(f"{p['n_lm']}/{p['n_ee']}" for p in per_edit)
        )
        print("     keys rel:   " + " ".join(fmt(p["keys"]) for p in per_edit))
        print("     values rel: " + " ".join(fmt(p["values"]) for p in per_edit))
        print("     radii abs:  " + " ".join(fmt(p["radii"]) for p in per_edit))
        print(
            "     labels eq:  "
            + " ".join("Y" if p["labels_equal"] else "N" for p in per_edit)
            + f"   final lm={per_edit[-1]['lm_labels']} ee={per_edit[-1]['ee_labels']}"
        )
        print(
            "     takes lm/ee: "
            + " ".join(f"{int(p['take_lm'])}{int(p['take_ee'])}" for p in edits)
            + "   logp(t0) lm: "
            + " ".join(f"{p['lp_lm']:.3f}" for p in edits)
            + " | ee: "
            + " ".join(f"{p['lp_ee']:.3f}" for p in edits)
        )
        print(
            "     max|dlogp| edit prompts: "
            + fmt(max(abs(p["lp_lm"] - p["lp_ee"]) for p in edits))
            + "  layer-out rel (all pos) edit: "
            + fmt(max(p["y_rel"] for p in edits))
            + "  unrelated: "
            + fmt(max(p["y_rel"] for p in unrelated))
            + "  unrelated logits vs base lm/ee: "
            + fmt(max(p["lp_lm_vs_base"] for p in unrelated))
            + "/"
            + fmt(max(p["lp_ee_vs_base"] for p in unrelated))
        )
        off_prompts = [
            (p["text"][:20], p["lm_fired"], p["n_tokens"])
            for p in v["probes"]
            if p["lm_fired"] not in ([], [p["n_tokens"] - 1])
        ]
        off_forced = [
            (t["case"], t["lm_fired"], t["start"])
            for t in v["teacher_forced"]
            if t["lm_fired"] not in ([], [t["start"] - 1])
        ]
        print(
            f"     lm-edit fires off the prompt's last token: prompts {off_prompts}"
            f"  prompt+target {off_forced}"
        )
        if v["diag"]:
            print(f"     (text, pos, token, key label, dist, radius): {v['diag']}")
        print(
            "     EasyEdit takes with key_id left by the last edit (teacher-forced use): "
            + "".join(str(int(t)) for t in v["sticky_takes"])
            + f"   final radii lm={[round(r, 4) for r in v['lm_radii']]}"
            + f" ee={[round(r, 5) for r in v['ee_radii']]}"
            + f"   ee losses={[round(x, 4) for x in v['ee_losses']]}"
        )


def print_extra_checks(x1: dict[str, Any], x2: list[dict[str, float]]) -> None:
    """X1 (S2/R5 without re-seeding) and X2 (cdist paths)."""
    v = x1["variants"][ALIGNED]
    values = " ".join("-" if p["values"] is None else fmt(p["values"]) for p in v["per_edit"])
    takes = "".join(str(int(p["take_ee"])) for p in v["probes"] if p["target"] is not None)
    print(f"\n=== {X1_NAME}")
    print(f"  actions {v['ee_actions']}  values rel per edit: {values}  takes: {takes}")
    for row in x2:
        print(
            f"=== X2 cdist, {row['n_keys']} keys of norm ~9 (dim 64): self-distance EasyEdit "
            f"{row['easyedit_self']:.2e} lm-edit {row['lm_edit_self']:.2e}; "
            f"max |diff| {row['max_diff']:.2e}"
        )


def largest(values: list[float | None]) -> str:
    """The largest of the comparable values, with how many edits were comparable."""
    known = [x for x in values if x is not None]
    if not known:
        return "-"
    text = fmt(max(known))
    return text if len(known) == len(values) else f"{text} ({len(known)}/{len(values)})"


def table_row(setting: str, variant: str, lm_actions: list[str], v: dict[str, Any]) -> str:
    """One line of the summary table."""
    per_edit = v["per_edit"]
    edits = [p for p in v["probes"] if p["target"] is not None]
    differing = [
        f"E{i} {theirs.split('(')[0].lower()}"
        for i, (ours, theirs) in enumerate(zip(lm_actions, v["ee_actions"], strict=True))
        if ours != theirs
    ]
    takes_lm = "".join(str(int(p["take_lm"])) for p in edits)
    takes_ee = "".join(str(int(p["take_ee"])) for p in edits)
    cells = [
        setting,
        variant,
        ", ".join(differing) or "same",
        f"{per_edit[-1]['n_lm']}/{per_edit[-1]['n_ee']}",
        largest([p["keys"] for p in per_edit]),
        largest([p["values"] for p in per_edit]),
        largest([p["radii"] for p in per_edit]),
        f"{takes_lm} / {takes_ee}",
        fmt(max(abs(p["lp_lm"] - p["lp_ee"]) for p in edits)),
    ]
    return "| " + " | ".join(cells) + " |"


def print_table(results: list[dict[str, Any]], x1: dict[str, Any] | None) -> None:
    """The summary as a Markdown table: per setting and variant, the edits whose EasyEdit
    action differs from lm-edit's, the final key counts, the largest differences of keys,
    values (relative) and radii (absolute) over the edits with equal key counts, the takes
    and the largest |Δ log p| of the targets' first tokens."""
    print(
        "\n| setting | EasyEdit variant | actions not as lm-edit's | keys lm/ee | keys rel |"
        " values rel | radii abs | takes lm / ee | max \\|Δlog p\\| |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        code = result["setting"].split()[0]
        for name, v in result["variants"].items():
            print(table_row(code, name.split()[0], result["lm_actions"], v))
    if x1 is not None:
        v = x1["variants"][ALIGNED]
        print(table_row("X1 (S2)", "R5, not re-seeded", x1["lm_actions"], v))


def parse_args() -> argparse.Namespace:
    parser = comparison_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        choices=[s.code for s in SETTINGS] + ["X"],
        help="run one setting, or X for the extra checks only",
    )
    return parser.parse_args()


def main() -> None:
    """Import the reference variants, run the settings and extra checks, print the table."""
    args = parse_args()
    checkout = find_checkout(args.reference_dir, GRACE_DIR, GRACE_FILES, "compare_grace")
    torch.set_num_threads(1)  # bit-for-bit comparisons: one reduction order
    import transformers

    from tests.conftest import _train_tokenizer

    transformers.logging.set_verbosity_error()
    print(f"EasyEdit GRACE from {checkout / GRACE_DIR}")
    print_patches()
    tokenizer = _train_tokenizer()
    results: list[dict[str, Any]] = []
    x1: dict[str, Any] | None = None
    x2: list[dict[str, float]] = []
    with reference_variants(checkout) as variants:
        for setting in SETTINGS:
            if args.only and setting.code != args.only:
                continue
            results.append(compare_setting(setting, tokenizer, variants))
            print_setting(results[-1])
        if args.only in (None, "X"):
            x1 = compare_setting(SETTINGS[1], tokenizer, {ALIGNED: variants[ALIGNED]}, False)
            x2 = cdist_errors()
            print_extra_checks(x1, x2)
    print_table(results, x1)
    if args.json:
        summary = {"settings": results, "x1_not_reseeded": x1, "x2_cdist": x2}
        args.json.write_text(json.dumps(summary, indent=1, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
