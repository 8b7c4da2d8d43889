"""``edited-hf``: lm-eval's HFLM, with a stream of edits applied before any request.

    lm_eval --model edited-hf \\
      --model_args pretrained=smollm2-135m,editor=rome,n_edits=10,edit_data=demo \\
      --tasks counterfact_edit

The model is loaded exactly as ``--model hf`` loads it (every HFLM argument works); the
arguments below are removed before HFLM sees them. Any other argument that names a
hyperparameter of the chosen editor (``layers=[5]``, ``v_lr=0.1``...) overrides it, and
``layers_module=`` / ``mlp_out_module=``... override the model anatomy.
``generation_batch_size=N`` batches generation requests by N while log-likelihood
requests keep ``batch_size``.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import fields
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from lm_edit.core.anatomy import split_anatomy_overrides
from lm_edit.core.arguments import HF_LOADING_ARGUMENTS, EditArguments, build
from lm_edit.core.record import EditRecord
from lm_edit.data.loading import load_edit_data, select_requests
from lm_edit.data.requests import EditRequest
from lm_edit.editors import all_hyperparameter_names, hyperparameter_names
from lm_edit.editors.config import as_dict
from lm_edit.evaluation.argmax_locality import unedited_argmax_steps
from lm_edit.evaluation.individual import score_individual
from lm_edit.evaluation.prompting import PromptCost, rewrite_requests, warn_rolling
from lm_edit.evaluation.ranks import check_ranks_agree
from lm_edit.evaluation.run_notes import notes
from lm_edit.evaluation.session import EditSession, open_session
from lm_edit.offline_model import resolve_pretrained
from lm_edit.stream import EditStream

logger = logging.getLogger(__name__)

EDIT_ARGUMENT_NAMES = frozenset(f.name for f in fields(EditArguments))
LOCALITY_MAX_TOKENS = 16


def split_model_args(kwargs: dict[str, Any]) -> tuple[EditArguments, dict, dict, dict]:
    """Split keyword arguments into (edit arguments, editor hyperparameters, anatomy
    overrides, HFLM arguments), each checked where it enters.

    Every name has one owner: editor hyperparameters may not take a name HFLM or edited-hf
    claims (checked when the editor is defined). A name no one claims that resembles an
    editor hyperparameter is refused as a likely typo; other names go on to HFLM, which
    hands them to ``from_pretrained``.
    """
    rest = dict(kwargs)
    edit_values = {name: rest.pop(name) for name in EDIT_ARGUMENT_NAMES if name in rest}
    edit_args = build(EditArguments, edit_values, "edited-hf")
    anatomy, rest = split_anatomy_overrides(rest)
    names = hyperparameter_names(edit_args.editor)
    hyper = {k: v for k, v in rest.items() if k in names}
    hflm = {k: v for k, v in rest.items() if k not in names}
    foreign = sorted(set(hflm) & all_hyperparameter_names())
    if foreign:
        raise ValueError(
            f"edited-hf: editor {edit_args.editor!r} does not take "
            f"{', '.join(foreign)} (another editor's hyperparameter); remove it or choose "
            f"an editor that takes it. {edit_args.editor!r} takes: "
            f"{', '.join(sorted(names)) or 'nothing'}."
        )
    for name in sorted(set(hflm) - HF_LOADING_ARGUMENTS):
        close = difflib.get_close_matches(name, sorted(names | EDIT_ARGUMENT_NAMES), n=1)
        if close:
            raise ValueError(
                f"edited-hf: unknown argument {name!r}; did you mean {close[0]!r}? "
                f"(editor {edit_args.editor!r} takes: {', '.join(sorted(names)) or 'nothing'})"
            )
    return edit_args, hyper, anatomy, hflm


def share_lm_eval_logging() -> None:
    """Send lm-edit's log lines through lm-eval's handlers, at lm-eval's level, so the
    statistics source and the edit manifest appear in the CLI's output."""
    ours, theirs = logging.getLogger("lm_edit"), logging.getLogger("lm_eval")
    if ours.handlers or not theirs.handlers:
        return
    for handler in theirs.handlers:
        ours.addHandler(handler)
    ours.setLevel(theirs.getEffectiveLevel())
    ours.propagate = False


@register_model("edited-hf")
class EditedLM(HFLM):
    """HFLM that edits its model once, after loading and before evaluation."""

    def __init__(self, pretrained: Any, defer_edits: bool = False, **kwargs: Any) -> None:
        """Load the model, open the edit session and apply all chosen edits, or none of
        them yet with ``defer_edits=True`` (then :meth:`edit_up_to` applies them)."""
        share_lm_eval_logging()
        edit_args, hyper, anatomy, hflm_args = split_model_args(kwargs)
        self.generation_batch_size = edit_args.generation_batch_size
        self.prompt_cost = PromptCost()
        edit_data = load_edit_data(edit_args.edit_data, split=edit_args.edit_split)
        self.planned_requests = select_requests(
            edit_data.requests, edit_args.n_edits_or_all, edit_args.edit_seed
        )
        super().__init__(pretrained=resolve_pretrained(pretrained), **hflm_args)
        self.edit_stream = EditStream.create(
            self.model,
            self.tokenizer,
            edit_args.editor,
            seed=edit_args.edit_seed,
            editor_config=edit_args.editor_config,
            anatomy_overrides=anatomy,
            **hyper,
        )
        self.edit_batch_size = edit_args.edit_batch_size
        self.edit_session = EditSession(
            requests=[],
            editor=self.edit_stream.spec.name,
            edit_data=edit_args.edit_data,
            data_source=edit_data.source,
            config={
                **as_dict(self.edit_stream.spec.config),
                **as_dict(edit_args),
                "family": self.edit_stream.spec.family,
            },
            tokenizer=self.tokenizer,
            planned=self.planned_requests,
            score_cases=edit_args.score_cases,
        )
        scored = self.edit_session.scored(self.planned_requests)
        self.edit_session.unedited_answers = self.greedy_locality_answers(scored)
        self.edit_session.unedited_argmax = unedited_argmax_steps(self, scored)
        self.individual_scores = edit_args.individual_scores
        open_session(self.edit_session)
        if not defer_edits:
            self.edit_up_to(len(self.planned_requests))

    def loglikelihood(
        self, requests: list[Instance], disable_tqdm: bool = False
    ) -> list[tuple[float, bool]]:
        """HFLM's log-likelihood of each request, its context rewritten by the model's
        prompt hooks (in-context edits) first."""
        requests = rewrite_requests(self, requests, self.prompt_cost)
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def loglikelihood_rolling(
        self, requests: list[Instance], disable_tqdm: bool = False
    ) -> list[float]:
        """HFLM's rolling log-likelihood (served without in-context edits; a warning
        says so when there are some)."""
        warn_rolling(self)
        return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """HFLM's generation, batched by ``generation_batch_size`` when it is set, each
        context rewritten by the model's prompt hooks (in-context edits) first.

        Log-likelihood memory grows with batch x length x vocabulary (HFLM keeps the
        log-softmax of every position), while greedy decoding on a CPU is cheaper per
        token in larger batches, so the two can use different batch sizes.
        """
        requests = rewrite_requests(self, requests, self.prompt_cost)
        if self.generation_batch_size is None:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        loglikelihood_batch_size = self.batch_size_per_gpu
        self.batch_size_per_gpu = self.generation_batch_size
        try:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        finally:
            self.batch_size_per_gpu = loglikelihood_batch_size

    @property
    def n_applied(self) -> int:
        """How many of the planned requests have been applied so far."""
        return len(self.edit_session.requests)

    def edit_up_to(self, count: int, progress: bool = True) -> None:
        """Continue the stream until the first ``count`` planned requests are applied (the
        session then scores exactly those); a no-op when they already are."""
        if not 0 <= count <= len(self.planned_requests):
            raise ValueError(
                f"Cannot edit up to {count}: {len(self.planned_requests)} edits are planned "
                "(raise n_edits)."
            )
        pending = self.planned_requests[self.n_applied : count]
        if pending:
            self.edit_stream.apply(
                pending,
                batch_size=self.edit_batch_size,
                progress=progress,
                after_batch=self._after_batch,
            )
        self.edit_session.weights_digest = check_ranks_agree(
            getattr(self, "accelerator", None), self.model
        )
        open_session(self.edit_session)
        logger.info("Edit manifest: %s", json.dumps(self.edit_session.manifest(), default=str))

    def _after_batch(self, record: EditRecord) -> None:
        """Record one applied batch in the session and, unless ``individual_scores=False``,
        score its cases right away (their individual scores)."""
        by_id = {r.case_id: r for r in self.planned_requests[self.n_applied :]}
        batch = [by_id[case_id] for case_id in record.case_ids]
        self.edit_session.requests.extend(batch)
        self.edit_session.records.append(record.summary())
        scored_ids = {r.case_id for r in self.edit_session.scored(self.planned_requests)}
        scored = [r for r in batch if r.case_id in scored_ids]
        if self.individual_scores and scored:
            self.edit_session.individual.update(score_individual(self, scored))

    def get_model_info(self) -> dict[str, Any]:
        """HFLM's model info plus the edit session's provenance (editor, resolved
        hyperparameters, the resolved edit data with its hash, the edited case ids), which
        lm-eval writes into the results' ``config``."""
        return {
            **super().get_model_info(),
            "edit_session": self.edit_session.manifest(),
            **notes(),
        }

    def greedy_locality_answers(self, requests: list[EditRequest]) -> dict[tuple[str, int], str]:
        """The current model's greedy continuation of every locality prompt, as long (in
        tokens) as the probe's gold answer not counting leading whitespace-only tokens,
        through HFLM's own generation (cut at a line break, at most 16 tokens).

        A continuation that opens with a bare space token (``" "`` before ``"1999"``)
        would otherwise be all whitespace: vacuous under teacher forcing and never
        matched in generation. Such answers get one more token until they show text.
        """
        budgets: dict[tuple[str, int], int] = {}
        prompts: dict[tuple[str, int], str] = {}
        for request in requests:
            for index, probe in enumerate(request.locality):
                length = len(self.tok_encode(" " + probe.answer, add_special_tokens=False))
                budgets[(request.case_id, index)] = max(1, min(length, LOCALITY_MAX_TOKENS))
                prompts[(request.case_id, index)] = probe.prompt
        answers: dict[tuple[str, int], str] = {}
        pending = list(prompts)
        while pending:
            answers.update(self._greedy(prompts, budgets, pending))
            pending = [
                key
                for key in pending
                if answers[key] and not answers[key].strip() and budgets[key] < LOCALITY_MAX_TOKENS
            ]
            for key in pending:
                budgets[key] += 1
        return answers

    def _greedy(
        self, prompts: dict[tuple[str, int], str], budgets: dict[tuple[str, int], int], keys: list
    ) -> dict[tuple[str, int], str]:
        """Greedy continuations of ``prompts[key]`` with ``budgets[key]`` tokens, cut at a
        line break."""
        instances = [
            Instance(
                "generate_until",
                {},
                (prompts[key], {"until": ["\n"], "max_gen_toks": budgets[key], "do_sample": False}),
                position,
            )
            for position, key in enumerate(keys)
        ]
        if not instances:
            return {}
        return dict(zip(keys, self.generate_until(instances, disable_tqdm=True), strict=True))
