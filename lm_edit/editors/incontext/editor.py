"""IKE: in-context knowledge editing (Zheng et al., 2023); no weight changes.

The editor keeps a memory of the edited facts and their demonstrations
(:mod:`.memory`) and registers it on the model as a prompt hook the first time it edits
(``record.add_prompt_hook``, so undo removes it). ``edited-hf`` then rewrites every
request lm-eval sends, log-likelihood and generation alike, to carry the retrieved
demonstrations and the most relevant new fact. A plain forward pass of the model is
unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from lm_edit.core.arguments import argument
from lm_edit.core.prompts import prompt_hooks
from lm_edit.core.record import EditRecord
from lm_edit.core.tokens import encode
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.incontext.demonstrations import demonstrations, new_fact
from lm_edit.editors.incontext.memory import InContextMemory
from lm_edit.editors.incontext.retrieval import Retriever, make_retrievers


@dataclass(frozen=True)
class InContextConfig(EditorConfig):
    """Hyperparameters of IKE (documented in editors/README.md)."""

    k: int = argument(16, ge=0, help="demonstrations per request")
    retriever: Literal["tfidf", "sentence-transformers"] = "tfidf"
    sentence_model: str = argument(
        "sentence-transformers/all-MiniLM-L6-v2", help="retriever=sentence-transformers"
    )


@register_editor("incontext")
class InContextEditor(Editor):
    """Stores each batch's facts and demonstrations in the memory its prompt hook reads."""

    config_class = InContextConfig
    config: InContextConfig
    changes_outputs = False
    changes_prompts = True
    quick_settings = {"k": 4}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.memory: InContextMemory | None = None
        self._retrievers: list[Retriever] | None = None

    def prepare(self, model: nn.Module, tokenizer) -> None:
        """Load the retriever (a sentence model that is not available fails here)."""
        if self._retrievers is None:
            self._retrievers = make_retrievers(
                self.config.retriever, self.config.sentence_model, count=2
            )

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Add ``requests`` to the memory, registering it on the model when it is not."""
        memory = self.memory
        if memory is None or not any(hook is memory for hook in prompt_hooks(model)):
            facts, demos = self._retrievers
            memory = InContextMemory(tokenizer, facts, demos, self.config.k)
            record.add_prompt_hook(model, memory)
            self.memory = memory
        added = memory.add(requests)
        record.on_undo("IKE memory", lambda: memory.remove(added))
        record.details.update(
            facts=len(memory.entries), demonstrations=len(memory.all_demonstrations)
        )

    def tokens_needed(self, tokenizer, request: EditRequest) -> int:
        """The longest demonstration of ``request`` with its new-fact line: each must fit
        the model's context for the case to be asked at all."""
        fact_line = len(encode(tokenizer, new_fact(request).query("")))
        return fact_line + max(len(encode(tokenizer, d.text)) for d in demonstrations(request))

    def reset(self) -> None:
        """Forget the memory (the stream was undone)."""
        self.memory = None
