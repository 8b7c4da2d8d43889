"""Re-check ``lm_edit/data/demo_edits.jsonl`` against the unedited SmolLM2-135M-Instruct.

Every case should be a fact the model demonstrably knows, so that an edit's effect (and any
damage it does) is measurable. For each case this script scores, with teacher forcing:

* the main prompt: ``log p(" " + target_true)`` against ``log p(" " + target_new)`` (summed
  token log-probabilities) and whether greedy decoding starts with ``target_true``;
* every rephrase: the same two checks;
* every locality probe: ``log p(" " + answer)`` against ``log p(" " + target_new)`` of the
  case, and whether greedy decoding starts with ``answer``.

The greedy check is exact without calling ``generate``: greedy decoding emits the answer's
tokens if and only if each of them is the arg-max of the logits at its teacher-forced
position. It is a token-level check, so a greedy output that spells the answer with other
tokens counts as a miss.

It first checks the set's structural rules (schema, distinct subjects, no surrounding spaces,
locality probes that mention no case's subject and whose answer is not ``target_new``) and
exits with status 1 when a rule is broken or a main prompt prefers ``target_new``. Runs on CPU
in fp32 with one thread by default, so its figures are the same on every run.

Usage: ``python bench/verify_demo_edits.py [--file PATH] [--json OUT] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from lm_edit.data.requests import EditRequest  # noqa: E402

DEFAULT_FILE = REPO_ROOT / "lm_edit" / "data" / "demo_edits.jsonl"


@dataclass(frozen=True)
class Score:
    """Teacher-forced score of one answer after one prompt."""

    logprob: float
    greedy: bool


@dataclass
class Comparison:
    """One prompt scored for the expected answer and for the case's ``target_new``."""

    prompt: str
    expected: str
    gap: float
    greedy: bool

    @property
    def prefers_expected(self) -> bool:
        """True when the expected answer is more probable than ``target_new``."""
        return self.gap > 0


@dataclass
class CaseReport:
    """All checks of one edit case."""

    request: EditRequest
    main: Comparison
    rephrases: list[Comparison] = field(default_factory=list)
    locality: list[Comparison] = field(default_factory=list)


def load_requests(path: Path) -> list[EditRequest]:
    """Read a JSONL file of edit records into :class:`EditRequest` objects."""
    requests = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            requests.append(
                EditRequest.from_dict({**json.loads(line), "source": f"{path.name}:{number}"})
            )
    return requests


def structural_problems(requests: Sequence[EditRequest]) -> list[str]:
    """Rule violations of the set that do not need the model (empty when the set is sound)."""
    problems = []
    subjects = {req.subject.lower() for req in requests}
    seen_ids: set[str] = set()
    seen_subjects: dict[str, str] = {}
    for req in requests:
        where = req.case_id
        if req.case_id in seen_ids:
            problems.append(f"{where}: duplicate case_id")
        seen_ids.add(req.case_id)
        if req.subject in seen_subjects:
            problems.append(
                f"{where}: subject {req.subject!r} already used by {seen_subjects[req.subject]}"
            )
        seen_subjects.setdefault(req.subject, req.case_id)
        if not req.target_true:
            problems.append(f"{where}: target_true is missing")
        elif req.target_true == req.target_new:
            problems.append(f"{where}: target_new equals target_true")
        if not req.rephrases:
            problems.append(f"{where}: no rephrases")
        if not req.locality:
            problems.append(f"{where}: no locality probes")
        for text in (req.prompt, *req.rephrases, *(p.prompt for p in req.locality)):
            if text != text.strip():
                problems.append(f"{where}: prompt {text!r} has leading or trailing whitespace")
        for probe in req.locality:
            if probe.answer == req.target_new:
                problems.append(f"{where}: locality answer {probe.answer!r} equals target_new")
            named = sorted(s for s in subjects if s in probe.prompt.lower())
            if named:
                problems.append(
                    f"{where}: locality prompt {probe.prompt!r} names subject {named[0]!r}"
                )
    return problems


class Scorer:
    """Scores answers after prompts with a causal LM, sharing forward passes between them.

    Scoring ``answer`` after ``prompt`` needs the logits at the positions of
    ``prompt + answer[:-1]``, so the model only runs on the distinct sequences of that form
    that are not a prefix of another one: a single-token ``target_new`` costs nothing beyond
    the row that scores ``target_true`` on the same prompt. The LM head is applied only at
    the positions that are read.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, batch_size: int = 32) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        pad_id = tokenizer.pad_token_id
        self.pad_id = tokenizer.eos_token_id if pad_id is None else pad_id

    def _ids(self, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` without special tokens."""
        return tuple(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _rows(self, needed: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """The distinct sequences in ``needed`` that are not a proper prefix of another."""
        ordered = sorted(set(needed))
        return [
            seq
            for seq, following in zip(ordered, [*ordered[1:], None], strict=True)
            if following is None or following[: len(seq)] != seq
        ]

    @torch.no_grad()
    def score(self, pairs: Sequence[tuple[str, str]]) -> list[Score]:
        """Summed log-probability and greedy check of each ``(prompt, answer)`` pair."""
        encoded = [(self._ids(prompt), self._ids(" " + answer)) for prompt, answer in pairs]
        rows = self._rows([p + a[:-1] for p, a in encoded])
        row_of = {
            row[:cut]: index for index, row in enumerate(rows) for cut in range(1, len(row) + 1)
        }
        wanted: dict[int, set[int]] = {}
        for prompt_ids, answer_ids in encoded:
            first = len(prompt_ids) - 1
            row = row_of[prompt_ids + answer_ids[:-1]]
            wanted.setdefault(row, set()).update(range(first, first + len(answer_ids)))
        logprobs: dict[tuple[int, int], torch.Tensor] = {}
        order = sorted(range(len(rows)), key=lambda index: len(rows[index]))
        body = self.model.base_model
        head = self.model.get_output_embeddings()
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            width = max(len(rows[index]) for index in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for slot, index in enumerate(chunk):
                ids[slot, : len(rows[index])] = torch.tensor(rows[index])
                mask[slot, : len(rows[index])] = 1
            hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
            picks = [
                (slot, index, pos)
                for slot, index in enumerate(chunk)
                for pos in sorted(wanted[index])
            ]
            slots = torch.tensor([slot for slot, _, _ in picks])
            positions = torch.tensor([pos for _, _, pos in picks])
            scores = head(hidden[slots, positions]).float().log_softmax(dim=-1)
            for (_, index, pos), vector in zip(picks, scores, strict=True):
                logprobs[(index, pos)] = vector
        results = []
        for prompt_ids, answer_ids in encoded:
            row = row_of[prompt_ids + answer_ids[:-1]]
            first = len(prompt_ids) - 1
            steps = torch.stack([logprobs[(row, first + k)] for k in range(len(answer_ids))])
            targets = torch.tensor(answer_ids)
            results.append(
                Score(
                    logprob=steps.gather(1, targets[:, None]).sum().item(),
                    greedy=bool((steps.argmax(dim=-1) == targets).all()),
                )
            )
        return results


def evaluate(requests: Sequence[EditRequest], scorer: Scorer) -> list[CaseReport]:
    """Run every check of every case (one batched pass over all prompts)."""
    jobs: list[tuple[int, str, str, str]] = []
    for index, req in enumerate(requests):
        if not req.target_true:
            raise ValueError(f"{req.case_id}: target_true is needed to verify a case")
        jobs.append((index, "main", req.prompt, req.target_true))
        jobs.extend((index, "rephrase", text, req.target_true) for text in req.rephrases)
        jobs.extend((index, "locality", p.prompt, p.answer) for p in req.locality)
    pairs: list[tuple[str, str]] = []
    for index, _, prompt, expected in jobs:
        pairs.append((prompt, expected))
        pairs.append((prompt, requests[index].target_new))
    scores = scorer.score(pairs)
    reports: dict[int, CaseReport] = {}
    for number, (index, kind, prompt, expected) in enumerate(jobs):
        good, bad = scores[2 * number], scores[2 * number + 1]
        comparison = Comparison(prompt, expected, good.logprob - bad.logprob, good.greedy)
        if kind == "main":
            reports[index] = CaseReport(requests[index], comparison)
        elif kind == "rephrase":
            reports[index].rephrases.append(comparison)
        else:
            reports[index].locality.append(comparison)
    return [reports[index] for index in range(len(requests))]


def _fraction(hits: int, total: int) -> str:
    return f"{hits}/{total} ({100.0 * hits / total:.0f}%)" if total else "0/0"


def summarise(reports: Sequence[CaseReport]) -> dict[str, Any]:
    """Aggregate figures of a verification run."""
    mains = [r.main for r in reports]
    rephrases = [c for r in reports for c in r.rephrases]
    locality = [c for r in reports for c in r.locality]
    relations = sorted({str(r.request.extra.get("relation", "?")) for r in reports})
    gaps = [c.gap for c in mains]
    return {
        "cases": len(reports),
        "relations": len(relations),
        "main_prob": sum(c.prefers_expected for c in mains),
        "main_greedy": sum(c.greedy for c in mains),
        "main_both": sum(c.prefers_expected and c.greedy for c in mains),
        "main_gap_mean": statistics.fmean(gaps) if gaps else 0.0,
        "main_gap_median": statistics.median(gaps) if gaps else 0.0,
        "main_gap_min": min(gaps) if gaps else 0.0,
        "rephrases": len(rephrases),
        "rephrase_prob": sum(c.prefers_expected for c in rephrases),
        "rephrase_greedy": sum(c.greedy for c in rephrases),
        "rephrase_gap_mean": statistics.fmean(c.gap for c in rephrases) if rephrases else 0.0,
        "cases_all_rephrases_prob": sum(
            all(c.prefers_expected for c in r.rephrases) for r in reports
        ),
        "locality": len(locality),
        "locality_prob": sum(c.prefers_expected for c in locality),
        "locality_greedy": sum(c.greedy for c in locality),
        "locality_gap_mean": statistics.fmean(c.gap for c in locality) if locality else 0.0,
    }


def _counts(comparisons: Sequence[Comparison]) -> str:
    """``prob/greedy/total``: how many prefer the expected answer, how many greedy-decode it."""
    prob = sum(c.prefers_expected for c in comparisons)
    greedy = sum(c.greedy for c in comparisons)
    return f"{prob}/{greedy}/{len(comparisons)}"


def print_table(reports: Sequence[CaseReport]) -> None:
    """Per-case table: main-prompt gap and greedy flag, rephrase and locality counts."""
    header = (
        f"{'case':<9} {'relation':<18} {'subject':<24} {'target_true':<19} {'target_new':<17} "
        f"{'gap':>6} {'greedy':>6} {'reph':>6} {'loc':>6}"
    )
    print(header)
    print("-" * len(header))
    for report in reports:
        req, main = report.request, report.main
        print(
            f"{req.case_id:<9} {str(req.extra.get('relation', '?'))[:18]:<18} "
            f"{req.subject[:24]:<24} {str(req.target_true)[:19]:<19} {req.target_new[:17]:<17} "
            f"{main.gap:>6.2f} {'yes' if main.greedy else 'no':>6} "
            f"{_counts(report.rephrases):>6} {_counts(report.locality):>6}"
        )
    print(
        "gap: log p(true) - log p(new) on the main prompt; reph, loc: prompts preferring the "
        "expected answer / greedy-decoding it / total"
    )


def print_relations(reports: Sequence[CaseReport]) -> None:
    """Per-relation figures: cases, main-prompt greedy hits and mean gap."""
    groups: dict[str, list[CaseReport]] = {}
    for report in reports:
        groups.setdefault(str(report.request.extra.get("relation", "?")), []).append(report)
    print()
    print(f"{'relation':<18} {'cases':>5} {'prob':>5} {'greedy':>6} {'mean gap':>8} {'reph':>8}")
    for relation, group in groups.items():
        print(
            f"{relation:<18} {len(group):>5} {sum(r.main.prefers_expected for r in group):>5} "
            f"{sum(r.main.greedy for r in group):>6} "
            f"{statistics.fmean(r.main.gap for r in group):>8.2f} "
            f"{_counts([c for r in group for c in r.rephrases]):>8}"
        )


def print_summary(summary: dict[str, Any]) -> None:
    """Aggregate figures, one per line."""
    s = summary
    print()
    print(f"cases: {s['cases']} over {s['relations']} relations")
    print(
        f"main prompt  prefers true over new: {_fraction(s['main_prob'], s['cases'])}; "
        f"greedy starts with true: {_fraction(s['main_greedy'], s['cases'])}; "
        f"both: {_fraction(s['main_both'], s['cases'])}"
    )
    print(
        f"main prompt  log-prob gap (true - new): mean {s['main_gap_mean']:.2f}, "
        f"median {s['main_gap_median']:.2f}, min {s['main_gap_min']:.2f}"
    )
    print(
        f"rephrases    prefers true over new: {_fraction(s['rephrase_prob'], s['rephrases'])}; "
        f"greedy: {_fraction(s['rephrase_greedy'], s['rephrases'])}; "
        f"mean gap {s['rephrase_gap_mean']:.2f}; "
        f"cases with every rephrase preferring true: "
        f"{_fraction(s['cases_all_rephrases_prob'], s['cases'])}"
    )
    print(
        f"locality     prefers answer over new: {_fraction(s['locality_prob'], s['locality'])}; "
        f"greedy: {_fraction(s['locality_greedy'], s['locality'])}; "
        f"mean gap {s['locality_gap_mean']:.2f}"
    )


def load_model() -> tuple[torch.nn.Module, Any]:
    """The unedited SmolLM2-135M-Instruct in fp32 on CPU, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_edit.offline_model import converted_model_dir

    path = converted_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval(), tokenizer


def main(argv: Sequence[str] | None = None) -> int:
    """Verify the demo edit set; return 0 when every rule and main-prompt check passes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="JSONL edit set")
    parser.add_argument("--json", type=Path, help="also write the summary figures here")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: fastest on a busy machine, and reproducible)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    requests = load_requests(args.file)
    problems = structural_problems(requests)
    if problems:
        for problem in problems:
            print(f"RULE: {problem}")
        return 1
    model, tokenizer = load_model()
    reports = evaluate(requests, Scorer(model, tokenizer))
    print_table(reports)
    print_relations(reports)
    summary = summarise(reports)
    print_summary(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    failures = [r.request.case_id for r in reports if not r.main.prefers_expected]
    if failures:
        print(f"FAIL: main prompt prefers target_new in {', '.join(failures)}")
        return 1
    print("OK: every case prefers target_true over target_new on its main prompt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
