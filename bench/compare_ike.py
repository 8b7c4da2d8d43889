"""Build lm-edit's in-context editing prompts (``editor=ike``, ``lm_edit/editors/incontext``)
and EasyEdit's IKE prompts (``easyeditor/models/ike`` for the demonstrations and their
retrieval, ``easyeditor/evaluate/evaluate.py`` for the prompts it scores) side by side for
the same requests, and print how the texts, the chosen demonstrations and the
log-probabilities of the targets on the tiny random Llama of the tests differ.

The reference code is not part of lm-edit. Clone it outside the repository,
``git clone https://github.com/zjunlp/EasyEdit`` (the comparison was made at commit
14cea82), or extract the folders from a bare mirror::

    git --git-dir=<mirror> archive HEAD easyeditor/models/ike easyeditor/evaluate \\
        | tar -x -C <dir>

and pass the folder that holds ``easyeditor/`` with ``--reference-dir`` (or
``LM_EDIT_REFERENCE_DIR``; a folder with the checkout in ``easyedit/`` is accepted too).
Only ``models/ike/{__init__,ike_main,ike_hparams,util}.py`` and
``evaluate/{evaluate,metric_meta}.py`` are read: they are copied into a package in a
temporary folder and patched textually (``PATCHES``: imports of the rest of EasyEdit and
the device only, no change of behaviour); every patch is a ``(file, old, new, count)``
entry, checked to occur exactly ``count`` times and printed at start. EasyEdit retrieves
with a sentence-transformers model, which is not installed here: a stand-in
``sentence_transformers`` module is put in ``sys.modules`` while the reference runs. Its
``SentenceTransformer.encode`` returns the TF-IDF vectors of lm-edit's default retriever
(fitted on every demonstration of the pool, as lm-edit's memory indexes them), and its
``util`` does what sentence-transformers' does (normalise, dot product, top-k sorted by
score), so both sides rank with the same scores and only the selection code differs.

Five requests (the tests' facts, one rephrase and one locality probe each) form the pool:
EasyEdit's ``train_ds`` and lm-edit's edit stream. For every request and probe (the edit
prompt, its rephrase and its locality prompt) the script compares:

- D  the pool's demonstration texts (``encode_ike_facts`` against ``demonstrations``);
- P  the prompt each side scores with the same ordered ``k`` demonstrations and the
  request's own fact (EasyEdit's ``compute_icl_edit_quality``; lm-edit's memory with
  scripted retrievers, served through ``rewrite_requests`` and lm-eval's ``HFLM``);
- Q  the retrieval query each side builds;
- S1/S2  the demonstrations chosen from the pool with the TF-IDF scores (EasyEdit's
  ``apply_ike_to_model`` with the pool of the other cases, S1, or of all cases, S2;
  lm-edit's memory with the request's own fact);
- T  which target tokens each side scores (lm-eval: the continuation ``" " + target``;
  EasyEdit's Llama path: the last ``len(tok(target)) - 1`` tokens, compared with
  ``tok(target)[1:]``, the target tokenised alone without its space);
- F  lm-edit as configured by default (``ike.yaml``: TF-IDF for the fact as well) against
  the same with the request's own fact stated.

The table's "same" counts requests whose scored texts are identical (P, S1, S2: lm-edit
against EasyEdit; F: default against own fact) or, for T, where the tokens EasyEdit compares
against are the last tokens of its sequence (how many: in the notes).

Log-probabilities: lm-edit's is lm-eval's (``HFLM.loglikelihood``, continuation
``" " + target``); EasyEdit's is read from the logits of its own forward pass over its own
token ids, over the same number of final tokens (EasyEdit itself reports token accuracy;
its Llama path compares the last ``len(tok(target)) - 1`` tokens, also shown). float32, one
thread. A Markdown table summarises the run. CPU only, a few seconds::

    OMP_NUM_THREADS=1 python bench/compare_ike.py --reference-dir <dir> [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from easyedit_copy import (  # first: puts this checkout's lm_edit on sys.path
    Patch,
    comparison_parser,
    find_checkout,
    patched_packages,
)

from lm_edit.data.requests import EditRequest, Probe  # noqa: E402

EE_DIR = Path("easyeditor")
EE_FILES = (
    "models/ike/__init__.py",
    "models/ike/ike_main.py",
    "models/ike/ike_hparams.py",
    "models/ike/util.py",
    "evaluate/evaluate.py",
    "evaluate/metric_meta.py",
)
PACKAGE_PREFIX = "easyedit_ike_"
K = 4  # demonstrations per request on both sides (both default to 16; the pool has 15)
MODEL_NAME = "tiny-llama"  # EasyEdit's icl_lm_eval takes its Llama path for this name

# -- textual patches of the reference copy: (file, old, new, expected count) --------------
# Needed to import the files on their own on CPU; no change of behaviour.
PATCHES: list[Patch] = [
    (
        "models/ike/ike_hparams.py",
        "from ...util.hparams import HyperParams",
        "HyperParams = object  # patched: EasyEdit's base class only adds from_hparams helpers",
        1,
    ),
    (
        "models/ike/ike_main.py",
        "from ...util.device import normalize_device",
        "normalize_device = lambda device: 'cpu'  # patched: CPU only",
        1,
    ),
    (
        "evaluate/evaluate.py",
        "from ..models.melo.melo import LORA",
        "LORA = None  # patched: MELO is not compared",
        1,
    ),
    (
        "evaluate/evaluate.py",
        "from ..util import HyperParams",
        "HyperParams = object  # patched: a type annotation only",
        1,
    ),
    (
        "evaluate/evaluate.py",
        "from ..util.device import normalize_device",
        "normalize_device = lambda device: 'cpu'  # patched: CPU only",
        1,
    ),
    # the metric helpers (nltk, openai, the trainers ...) are not used by the IKE path
    (
        "evaluate/evaluate.py",
        "from .evaluate_utils import (",
        "if False: from .evaluate_utils import (  # patched: unused by compute_icl_edit_quality",
        1,
    ),
]

CASES = [
    EditRequest(
        "c1",
        "The Colosseum is located in the city of",
        "The Colosseum",
        "Madrid",
        "Rome",
        rephrases=("Where is the Colosseum? It is in",),
        locality=(Probe("The Louvre is located in the city of", "Paris"),),
    ),
    EditRequest(
        "c2",
        "Toyota is a car company from",
        "Toyota",
        "Germany",
        "Japan",
        rephrases=("Toyota makes cars in",),
        locality=(Probe("Volkswagen is a car company from", "Germany"),),
    ),
    EditRequest(
        "c3",
        "The Eiffel Tower is located in the city of",
        "The Eiffel Tower",
        "Rome",
        "Paris",
        rephrases=("Where is the Eiffel Tower? It is in the city of",),
        locality=(Probe("The Colosseum is located in the city of", "Rome"),),
    ),
    EditRequest(
        "c4",
        "Danielle Darrieux is a native speaker of",
        "Danielle Darrieux",
        "English",
        "French",
        rephrases=("The mother tongue of Danielle Darrieux is",),
        locality=(Probe("Michael Jordan plays the sport of", "basketball"),),
    ),
    EditRequest(
        "c5",
        "Lionel Messi plays",
        "Lionel Messi",
        "tennis",
        "football",
        rephrases=("Lionel Messi is a professional player of",),
        locality=(Probe("Toyota is a car company from", "Japan"),),
    ),
]
PROBES = ("edit", "rephrase", "locality")


def record(case: EditRequest) -> dict[str, Any]:
    """``case`` as an EasyEdit request / training record."""
    return {
        "prompt": case.prompt,
        "target_new": case.target_new,
        "ground_truth": case.target_true,
        "rephrase_prompt": case.rephrases[0],
        "locality_prompt": case.locality[0].prompt,
        "locality_ground_truth": case.locality[0].answer,
        "locality": {
            "neighborhood": {
                "prompt": case.locality[0].prompt,
                "ground_truth": case.locality[0].answer,
            }
        },
    }


def probe_pairs(case: EditRequest) -> dict[str, tuple[str, str]]:
    """(context, target) of each probe of ``case``."""
    return {
        "edit": (case.prompt, case.target_new),
        "rephrase": (case.rephrases[0], case.target_new),
        "locality": (case.locality[0].prompt, case.locality[0].answer),
    }


# -- the reference ------------------------------------------------------------------------
class StandIn:
    """sentence-transformers' ``SentenceTransformer`` and ``util`` as IKE uses them, with
    ``encode`` returning TF-IDF vectors; records every text it is asked to encode."""

    encoder: Callable[[list[str]], torch.Tensor] | None = None
    seen: list[str] = []

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.name = name

    def to(self, device: Any) -> StandIn:
        return self

    def encode(self, texts: str | list[str], **kwargs: Any) -> Any:
        """Vectors of ``texts`` (one vector for one string), as numpy like the original."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        StandIn.seen.extend(batch)
        vectors = StandIn.encoder(batch).numpy()
        return vectors[0] if single else vectors

    @staticmethod
    def normalize_embeddings(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x.float(), p=2, dim=1)

    @staticmethod
    def dot_score(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b.T

    @staticmethod
    def semantic_search(
        queries: torch.Tensor, corpus: torch.Tensor, score_function: Callable, top_k: int
    ) -> list[list[dict[str, Any]]]:
        """sentence-transformers' search: top-k per query, sorted by descending score."""
        scores = score_function(queries, corpus)
        values, ids = torch.topk(scores, min(top_k, scores.shape[1]), dim=1, sorted=False)
        return [
            sorted(
                ({"corpus_id": int(i), "score": float(v)} for v, i in zip(vs, row, strict=True)),
                key=lambda hit: hit["score"],
                reverse=True,
            )
            for vs, row in zip(values, ids, strict=True)
        ]


@contextlib.contextmanager
def reference(checkout: Path) -> Iterator[types.SimpleNamespace]:
    """EasyEdit's ``ike_main``, ``util`` and ``evaluate`` from a patched copy, with the
    stand-in ``sentence_transformers`` in ``sys.modules`` (both forgotten after)."""
    stand_in = types.ModuleType("sentence_transformers")
    stand_in.SentenceTransformer = StandIn
    stand_in.util = StandIn
    saved = sys.modules.get("sentence_transformers")
    sys.modules["sentence_transformers"] = stand_in
    try:
        with patched_packages(
            checkout, EE_DIR, EE_FILES, {"R0": PATCHES}, PACKAGE_PREFIX, "compare_ike"
        ) as packages:
            package = packages["R0"]
            yield types.SimpleNamespace(
                main=importlib.import_module(f"{package}.models.ike.ike_main"),
                util=importlib.import_module(f"{package}.models.ike.util"),
                evaluate=importlib.import_module(f"{package}.evaluate.evaluate"),
            )
    finally:
        if saved is None:
            sys.modules.pop("sentence_transformers", None)
        else:
            sys.modules["sentence_transformers"] = saved


def print_patches() -> None:
    """The patches of the reference copy."""
    print("Reference patches (file: old -> new, expected count):")
    for file, old, new, count in PATCHES:
        print(f"  {file}: {old!r} -> {new!r} ({count}x)")
    print("  plus a stand-in sentence_transformers module (TF-IDF vectors) in sys.modules")


class Recorder:
    """Wraps EasyEdit's tokenizer and model to keep the texts and token ids it scores and
    the logits of each forward pass."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.texts: list[str] = []
        self.passes: list[tuple[torch.Tensor, torch.Tensor]] = []

        recorder = self

        class Tok:
            def __call__(self, text: str, **kwargs: Any) -> Any:
                recorder.texts.append(text)
                return tokenizer(text, **kwargs)

            def __getattr__(self, name: str) -> Any:
                return getattr(tokenizer, name)

        class Model:
            def __call__(self, input_ids: torch.Tensor, **kwargs: Any) -> Any:
                out = model(input_ids=input_ids, **kwargs)
                recorder.passes.append((input_ids[0], out.logits[0].float()))
                return out

        self.tok = Tok()
        self.wrapped = Model()


def ee_hparams(ee: types.SimpleNamespace, results_dir: str) -> Any:
    """EasyEdit's IKE hparams (its hparams/IKE values but ``k``)."""
    return ee.main.IKEHyperParams(
        device=0,
        alg_name="IKE",
        model_name=MODEL_NAME,
        sentence_model_name="stand-in/all-MiniLM-L6-v2",
        k=K,
        results_dir=results_dir,
    )


def ee_scores(
    ee: types.SimpleNamespace, model: Any, tokenizer: Any, case: EditRequest, icl: list[str]
) -> dict[str, dict[str, Any]]:
    """Per probe: the text EasyEdit's ``compute_icl_edit_quality`` scores with ``icl``, its
    token ids, the log-probabilities of its last tokens and its own accuracy."""
    rec = Recorder(model, tokenizer)
    with torch.no_grad():
        result = ee.evaluate.compute_icl_edit_quality(
            rec.wrapped, MODEL_NAME, ee_hparams(ee, ""), rec.tok, icl, record(case), "cpu"
        )
    # calls: rewrite, rephrase, locality without and with the demonstrations
    if len(rec.passes) != 4 or len(rec.texts) != 8:
        sys.exit(f"compare_ike: EasyEdit made {len(rec.passes)} forward passes, expected 4")
    out = {}
    for probe, index in zip(PROBES, (0, 1, 3), strict=True):
        ids, logits = rec.passes[index]
        target_ids = tokenizer(rec.texts[2 * index], return_tensors="pt")["input_ids"][0]
        out[probe] = {
            "text": rec.texts[2 * index + 1],
            "ids": ids,
            "log_probs": torch.log_softmax(logits, dim=-1),
            "compared": len(target_ids) - 1,  # its Llama path drops a (BOS) token
            "compared_ids": target_ids[1:].tolist(),
        }
    out["edit"]["acc"] = result["rewrite_acc"][0]
    out["rephrase"]["acc"] = result["rephrase_acc"]
    out["locality"]["acc"] = result["locality"]["neighborhood_acc"]
    return out


def tail_log_prob(scored: dict[str, Any], n: int) -> float:
    """Sum of the log-probabilities of the last ``n`` tokens of EasyEdit's sequence."""
    ids, lp = scored["ids"], scored["log_probs"]
    length = len(ids)
    return float(sum(lp[t - 1, ids[t]] for t in range(length - n, length)))


def ee_select(
    ee: types.SimpleNamespace, pool: list[EditRequest], case: EditRequest, folder: str
) -> tuple[list[str], list[str], str]:
    """EasyEdit's pool sentences (``encode_ike_facts``), its ``k`` retrieved
    demonstrations for ``case`` (``apply_ike_to_model``) and the query it encoded."""
    hparams = ee_hparams(ee, folder)
    ds = [record(c) for c in pool]
    StandIn.seen = []
    ee.util.encode_ike_facts(StandIn(hparams.sentence_model_name), ds, hparams)
    sentences = list(StandIn.seen)
    StandIn.seen = []
    chosen = ee.main.apply_ike_to_model(None, None, [record(case)], hparams, train_ds=ds)
    return sentences, chosen, StandIn.seen[-1]


# -- lm-edit ------------------------------------------------------------------------------
class ScriptedRetriever:
    """A retriever whose scores come from ``score(text, query)``; records the queries."""

    def __init__(self, score: Callable[[str, str], float]) -> None:
        self.score = score
        self.texts: list[str] = []
        self.queries: list[str] = []

    def index(self, texts: list[str]) -> None:
        self.texts = list(texts)

    def scores(self, query: str) -> torch.Tensor:
        self.queries.append(query)
        return torch.tensor([self.score(t, query) for t in self.texts], dtype=torch.float64)


def own_fact(case: EditRequest) -> ScriptedRetriever:
    """A fact retriever that ranks ``case``'s fact first (EasyEdit states the own fact)."""
    from lm_edit.editors.incontext.demonstrations import new_fact

    text = new_fact(case).text
    return ScriptedRetriever(lambda fact, query: 1.0 if fact == text else 0.0)


def fixed_demos(chosen: list[str]) -> ScriptedRetriever:
    """A demonstration retriever that ranks ``chosen`` first, in that order."""
    return ScriptedRetriever(
        lambda text, query: float(len(chosen) - chosen.index(text)) if text in chosen else -1.0
    )


def lm_scores(lm: Any, memory: Any, case: EditRequest) -> dict[str, dict[str, Any]]:
    """Per probe: the context lm-edit's prompt hook gives lm-eval and lm-eval's
    log-likelihood of ``" " + target`` after it."""
    from lm_eval.api.instance import Instance

    from lm_edit.core.prompts import register_prompt_hook, remove_prompt_hook
    from lm_edit.evaluation.prompting import PromptCost, rewrite_requests

    pairs = probe_pairs(case)
    instances = [
        Instance("loglikelihood", {}, (context, " " + target), i)
        for i, (context, target) in enumerate(pairs.values())
    ]
    if memory is not None:
        register_prompt_hook(lm.model, memory)
    try:
        rewritten = rewrite_requests(lm, instances, PromptCost())
        scores = lm.loglikelihood(rewritten, disable_tqdm=True)
    finally:
        if memory is not None:
            remove_prompt_hook(lm.model, memory)
    out = {}
    for probe, instance, (lp, _) in zip(PROBES, rewritten, scores, strict=True):
        context, continuation = instance.args
        whole = lm.tok_encode(context + continuation)
        out[probe] = {
            "text": context + continuation,
            "log_prob": lp,
            "continuation_tokens": len(whole) - len(lm.tok_encode(context)),
        }
    return out


def lm_memory(tokenizer: Any, pool: list[EditRequest], facts: Any, demos: Any, k: int = K) -> Any:
    """lm-edit's IKE memory over ``pool`` with the given retrievers."""
    from lm_edit.editors.incontext.memory import InContextMemory

    memory = InContextMemory(tokenizer, facts, demos, k)
    memory.add(pool)
    return memory


def demo_texts(memory: Any, context: str) -> tuple[list[str], str]:
    """The demonstrations lm-edit's memory chooses for ``context`` and the fact stated."""
    fact, chosen = memory.select(context, None)
    return [d.text for d in chosen], fact.case_id


# -- the comparison -----------------------------------------------------------------------
@dataclass
class Row:
    """One measured comparison of one request and probe."""

    check: str
    case: str
    probe: str
    same_text: bool
    lm_log_prob: float
    ee_log_prob: float
    note: str = ""


def short(texts: list[str], pool: list[str]) -> str:
    """Demonstrations as pool indices (``c<case>.<copy/update/retain>``)."""
    names = []
    for text in texts:
        index = pool.index(text)
        names.append(f"{CASES[index // 3].case_id}{'cur'[index % 3]}")
    return " ".join(names)


def run(ee: types.SimpleNamespace, tokenizer: Any) -> dict[str, Any]:
    """Every check on the tiny Llama."""
    from lm_eval.models.huggingface import HFLM

    from lm_edit.editors.incontext.demonstrations import demonstrations
    from lm_edit.editors.incontext.retrieval import TfidfRetriever
    from tests.conftest import make_tiny_model

    model = make_tiny_model("llama", len(tokenizer)).float()
    model.config.max_position_embeddings = 1024  # rotary: nothing to grow
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        lm = HFLM(
            pretrained=model, tokenizer=tokenizer, device="cpu", batch_size=1, max_length=1024
        )
    lm_pool = [d.text for c in CASES for d in demonstrations(c)]
    tfidf = TfidfRetriever()  # lm-edit's default, fitted on the pool as the memory does
    tfidf.index(lm_pool)
    StandIn.encoder = lambda texts: torch.tensor(
        tfidf._vectorizer.transform(texts).toarray(), dtype=torch.float32
    )
    rows: list[Row] = []
    out: dict[str, Any] = {"selection": [], "queries": []}
    with tempfile.TemporaryDirectory(prefix="lm-edit-compare-ike-") as tmp:
        ee_pool, _, _ = ee_select(ee, CASES, CASES[0], f"{tmp}/all")
        out["pool_same"] = ee_pool == lm_pool
        out["pool_sizes"] = (len(ee_pool), len(lm_pool))
        for case in CASES:
            others = [c for c in CASES if c is not case]
            # P: the same ordered demonstrations (the last K of the other cases, reversed)
            fixed = [d.text for c in others for d in demonstrations(c)][-K:][::-1]
            memory = lm_memory(tokenizer, CASES, own_fact(case), fixed_demos(fixed))
            ours = lm_scores(lm, memory, case)
            theirs = ee_scores(ee, model, tokenizer, case, fixed)
            for probe in PROBES:
                a, b = ours[probe], theirs[probe]
                rows.append(
                    Row(
                        "P fixed demos",
                        case.case_id,
                        probe,
                        a["text"] == b["text"],
                        a["log_prob"],
                        tail_log_prob(b, a["continuation_tokens"]),
                        f"EE acc {b['acc']}",
                    )
                )
                tail = b["ids"][-b["compared"] :].tolist()
                rows.append(
                    Row(
                        "T EasyEdit's target tokens",
                        case.case_id,
                        probe,
                        b["compared_ids"] == tail,
                        a["log_prob"],
                        tail_log_prob(b, b["compared"]),
                        f"lm-eval scores {a['continuation_tokens']} tokens, EE compares the last "
                        f"{b['compared']} with {tokenizer.decode(b['compared_ids'])!r} "
                        f"(tail {tokenizer.decode(tail)!r})",
                    )
                )
            # Q and S: retrieval with the TF-IDF scores
            demos_retriever = TfidfRetriever()
            memory = lm_memory(tokenizer, CASES, own_fact(case), Spy(demos_retriever))
            for label, pool, folder in (("S1", others, "others"), ("S2", CASES, "all")):
                _, chosen, query = ee_select(ee, pool, case, f"{tmp}/{folder}-{case.case_id}")
                theirs = ee_scores(ee, model, tokenizer, case, chosen)
                mine = {p: demo_texts(memory, c)[0] for p, (c, _) in probe_pairs(case).items()}
                ours = lm_scores(lm, memory, case)
                if label == "S1":
                    out["queries"].append(
                        {"case": case.case_id, "ee": query, "lm": memory._demos.queries[:3]}
                    )
                for probe in PROBES:
                    own = sum(t in [d.text for d in demonstrations(case)] for t in chosen)
                    rows.append(
                        Row(
                            f"{label} TF-IDF selection",
                            case.case_id,
                            probe,
                            ours[probe]["text"] == theirs[probe]["text"],
                            ours[probe]["log_prob"],
                            tail_log_prob(theirs[probe], ours[probe]["continuation_tokens"]),
                            f"EE [{short(chosen, lm_pool)}] ({own} own) / "
                            f"lm [{short(mine[probe], lm_pool)}]",
                        )
                    )
                out["selection"].append(
                    {"pool": label, "case": case.case_id, "ee": short(chosen, lm_pool)}
                    | {f"lm_{p}": short(mine[p], lm_pool) for p in PROBES}
                )
            # F: lm-edit's defaults (TF-IDF for the fact too) against P's own-fact prompts
            default = lm_memory(tokenizer, CASES, TfidfRetriever(), TfidfRetriever())
            ours = lm_scores(lm, default, case)
            fixed_memory = lm_memory(tokenizer, CASES, own_fact(case), TfidfRetriever())
            own_fact_scores = lm_scores(lm, fixed_memory, case)
            for probe, (context, _) in probe_pairs(case).items():
                _, stated = demo_texts(default, context)
                rows.append(
                    Row(
                        "F default fact retrieval",
                        case.case_id,
                        probe,
                        ours[probe]["text"] == own_fact_scores[probe]["text"],
                        ours[probe]["log_prob"],
                        own_fact_scores[probe]["log_prob"],
                        f"{case.case_id}->{stated}",
                    )
                )
        bare = lm_scores(lm, None, CASES[0])
    out["example"] = {
        "lm": ours_example(lm, tokenizer, CASES[0]),
        "unedited": {p: bare[p]["text"] for p in PROBES},
    }
    out["rows"] = [vars(r) for r in rows]
    return out


class Spy:
    """A retriever that records its queries and delegates the scores."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.queries: list[str] = []

    def index(self, texts: list[str]) -> None:
        self.inner.index(texts)

    def scores(self, query: str) -> torch.Tensor:
        self.queries.append(query)
        return self.inner.scores(query)


def ours_example(lm: Any, tokenizer: Any, case: EditRequest) -> dict[str, str]:
    """lm-edit's scored texts for ``case`` with two fixed demonstrations."""
    from lm_edit.editors.incontext.demonstrations import demonstrations

    fixed = [d.text for d in demonstrations(CASES[1])][:2]
    memory = lm_memory(tokenizer, CASES, own_fact(case), fixed_demos(fixed), k=2)
    return {p: v["text"] for p, v in lm_scores(lm, memory, case).items()}


# -- output -------------------------------------------------------------------------------
def print_details(out: dict[str, Any]) -> None:
    """The pool, queries, selections and one worked example."""
    print(
        f"\nD pool: EasyEdit {out['pool_sizes'][0]} / lm-edit {out['pool_sizes'][1]} "
        f"demonstrations, identical texts in the same order: {out['pool_same']}"
    )
    print("\nQ retrieval queries (EasyEdit once per request; lm-edit per context):")
    for q in out["queries"][:2]:
        print(f"  {q['case']} EE {q['ee']!r}")
        for text in q["lm"]:
            print(f"  {q['case']} lm {text!r}")
    print("\nS selections (pool index: c<case><c=copy u=update r=retain>, best first):")
    for s in out["selection"]:
        print(
            f"  {s['pool']} {s['case']}: EE [{s['ee']}] | lm edit [{s['lm_edit']}] "
            f"rephrase [{s['lm_rephrase']}] locality [{s['lm_locality']}]"
        )
    print("\nExample: lm-edit's scored texts for c1 with two fixed demonstrations (k=2):")
    for probe, text in out["example"]["lm"].items():
        print(f"  {probe}: {text!r}")


def print_table(rows: list[dict[str, Any]]) -> None:
    """The Markdown summary: one row per check and probe, over the five requests."""
    print(
        "\n| check | probe | same (of 5) | log-prob lm-edit (mean) | log-prob EasyEdit "
        "(mean) | max abs diff | notes (c1; F: case->fact stated) |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    checks = dict.fromkeys(r["check"] for r in rows)
    for check in checks:
        for probe in PROBES:
            rs = [r for r in rows if r["check"] == check and r["probe"] == probe]
            lm = sum(r["lm_log_prob"] for r in rs) / len(rs)
            ee = sum(r["ee_log_prob"] for r in rs) / len(rs)
            diff = max(abs(r["lm_log_prob"] - r["ee_log_prob"]) for r in rs)
            note = " ".join(r["note"] for r in rs) if check.startswith("F") else rs[0]["note"]
            print(
                f"| {check} | {probe} | {sum(r['same_text'] for r in rs)} | {lm:.4f} "
                f"| {ee:.4f} | {diff:.2e} | {note} |"
            )


def parse_args() -> argparse.Namespace:
    parser = comparison_parser(__doc__.split("\n\n")[0])
    return parser.parse_args()


def main() -> None:
    """Import the reference, run the checks, print the table."""
    args = parse_args()
    checkout = find_checkout(args.reference_dir, EE_DIR, EE_FILES, "compare_ike")
    torch.set_num_threads(1)
    import transformers

    from tests.conftest import _train_tokenizer

    transformers.logging.set_verbosity_error()
    print(f"EasyEdit IKE from {checkout / EE_DIR}")
    print_patches()
    tokenizer = _train_tokenizer()
    with reference(checkout) as ee:
        out = run(ee, tokenizer)
        print_details(out)
    print_table(out["rows"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
