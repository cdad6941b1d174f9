"""A generative model's answers read as class labels, for runs whose answers are labels (SFT on a
`chunk_text,frame_name` CSV): pure functions, no model.

An answer is normalised (case, runs of whitespace, trailing punctuation) and mapped onto the label
set pack reported; one that matches no label is wrong and is listed, never guessed at.
"""

from __future__ import annotations

import string
from typing import Any, Sequence

from jobs.common.errors import InvalidData
from jobs.evaluate.metrics import classification_metrics

# The confusion matrix's column for answers that are no label.
OUTSIDE = "(outside the label set)"
_TRAILING = string.punctuation + string.whitespace


def normalize_label(text: str) -> str:
    return " ".join(text.split()).casefold().rstrip(_TRAILING)


def label_table(labels: Sequence[str]) -> dict[str, str]:
    """normalised form -> label; two labels that normalise alike could not be told apart."""
    table: dict[str, str] = {}
    for label in labels:
        key = normalize_label(label)
        if key in table:
            raise InvalidData(f"pack's labels {table[key]!r} and {label!r} are the same after normalisation")
        table[key] = label
    return table


def score_labels(
    ids: Sequence[str], expected: Sequence[str], rows: list[dict[str, Any]], labels: Sequence[str]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """One model's label metrics; each row gets its `label` (None outside the set) and `correct`.
    Returns the metrics and the answers outside the label set ({id, answer})."""
    table = label_table(labels)
    outside = []
    for row_id, row, gold in zip(ids, rows, expected):
        row["label"] = table.get(normalize_label(row["answer"]))
        row["correct"] = row["label"] == gold
        if row["label"] is None:
            outside.append({"id": row_id, "answer": row["answer"]})
    predicted = [row["label"] if row["label"] is not None else OUTSIDE for row in rows]
    metrics = classification_metrics(list(expected), predicted, labels)
    metrics["outsideLabelSet"] = len(outside)
    return metrics, outside
