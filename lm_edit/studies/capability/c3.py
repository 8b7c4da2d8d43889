"""C3 (Chinese multiple-choice reading comprehension, Sun et al., 2020) as a 0-shot
generative task: the model answers with an option letter."""

from __future__ import annotations

from typing import Any

from lm_edit.studies.capability.choices import LETTERS, first_option_letter, option_lines


def flatten(documents: list[str], document_id: str, questions: dict[str, list[Any]]):
    """The docs (one per question) of one Hub row."""
    for i, (question, answer, choices) in enumerate(
        zip(questions["question"], questions["answer"], questions["choice"], strict=True)
    ):
        if answer not in choices:
            raise ValueError(
                f"C3 document {document_id}, question {i}: the answer {answer!r} "
                f"is not one of its choices {choices}."
            )
        yield {
            "id": f"{document_id}#{i}",
            "context": "\n".join(documents),
            "question": question,
            "choices": list(choices),
            "label": choices.index(answer),
        }


def process_docs(dataset: Any) -> Any:
    """One doc per question (the Hub rows hold a document and all its questions)."""

    def flatten_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {
            k: [] for k in ("id", "context", "question", "choices", "label")
        }
        for row in zip(batch["documents"], batch["document_id"], batch["questions"], strict=True):
            for doc in flatten(*row):
                for key, value in doc.items():
                    out[key].append(value)
        return out

    return dataset.map(flatten_batch, batched=True, remove_columns=dataset.column_names)


def doc_to_text(doc: dict[str, Any]) -> str:
    """Passage, question, lettered options and the instruction to answer with a letter."""
    letters = "”，“".join(LETTERS[: len(doc["choices"])])
    return (
        f"{doc['context']}\n问：{doc['question']}\n{option_lines(doc['choices'])}\n"
        f"请从“{letters}”中选择一个作为答案。\n答："
    )


def doc_to_target(doc: dict[str, Any]) -> str:
    """The gold option letter."""
    return LETTERS[doc["label"]]


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Accuracy of the first option letter in the generation."""
    chosen = first_option_letter(results[0], len(doc["choices"]))
    return {"acc": float(chosen == LETTERS[doc["label"]])}
