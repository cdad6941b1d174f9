"""Metrics of a model's answers against reference answers: pure functions, no model.

exact match and token-F1 use SQuAD's answer normalization (lower case, no
punctuation, no articles, single spaces). Loss is the mean negative
log-likelihood per reference-answer token; perplexity is exp(loss).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any, Sequence

from jobs.common.gate import GATE_KEYS, gate_name

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def generation_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Aggregate one model's per-example results: passed, exactMatch, tokenF1, nll, tokens."""
    nll = sum(r["nll"] for r in rows if r.get("nll") is not None)
    tokens = sum(r["tokens"] for r in rows if r.get("nll") is not None)
    loss = nll / tokens if tokens else None
    return {
        "passRate": round(_mean([float(r["passed"]) for r in rows]), 4),
        "exactMatch": round(_mean([r["exactMatch"] for r in rows]), 4),
        "tokenF1": round(_mean([r["tokenF1"] for r in rows]), 4),
        "loss": round(loss, 4) if loss is not None else None,
        "perplexity": round(math.exp(min(loss, 700)), 4) if loss is not None else None,
    }


def classification_metrics(expected: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy and the precision/recall/F1 family over `labels` (scikit-learn). A prediction outside
    the labels is wrong: it lowers accuracy and recall, and is no class's prediction. Averages
    take the labels that occur, expected or predicted (scikit-learn's default without the answers
    outside the set); perClass lists every label."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    occurring = set(expected) | set(predicted)
    present = [label for label in labels if label in occurring]

    def averaged(average: str | None) -> Any:
        chosen = list(labels) if average is None else present
        return precision_recall_fscore_support(expected, predicted, labels=chosen, average=average, zero_division=0)

    (p, r, f, _), (_, _, fmicro, _), (_, _, fw, _) = averaged("macro"), averaged("micro"), averaged("weighted")
    matrix_labels = [*labels, *sorted({x for x in predicted if x not in labels})]
    return {
        "accuracy": round(float(accuracy_score(expected, predicted)), 4),
        "f1Macro": round(float(f), 4),
        "f1Micro": round(float(fmicro), 4),
        "f1Weighted": round(float(fw), 4),
        "precisionMacro": round(float(p), 4),
        "recallMacro": round(float(r), 4),
        "perClass": {
            label: {"precision": round(float(pc), 4), "recall": round(float(rc), 4), "f1": round(float(fc), 4), "support": int(n)}
            for label, pc, rc, fc, n in zip(labels, *averaged(None))
        },
        # rows: expected, columns: predicted; answers outside the label set get columns of their own
        "confusion": {
            "labels": matrix_labels,
            "matrix": confusion_matrix(expected, predicted, labels=matrix_labels).tolist(),
        },
    }


# metrics.json key -> the gate's metric suffix (gate names are base<Suffix> / tuned<Suffix>)
GATE_NAMES = {key: gate_name("", key) for key in GATE_KEYS}


def gate_metrics(base: dict[str, Any], tuned: dict[str, Any]) -> dict[str, float]:
    """The flat names the promotion gate reads: basePassRate, tunedLoss, ..."""
    out: dict[str, float] = {}
    for who, values in (("base", base), ("tuned", tuned)):
        for key, suffix in GATE_NAMES.items():
            if values.get(key) is not None:
                out[f"{who}{suffix}"] = values[key]
    return out


def split_gate_metrics(flat: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(base, tuned) metrics.json-style dicts from the flat names (as in the step's manifest)."""
    sides: dict[str, dict[str, float]] = {"base": {}, "tuned": {}}
    for key, suffix in GATE_NAMES.items():
        for who, side in sides.items():
            if f"{who}{suffix}" in flat:
                side[key] = flat[f"{who}{suffix}"]
    return sides["base"], sides["tuned"]
