"""Metrics of the evaluate step: the labels a model gives, and the names the gate reads.
The answer metrics (exact match, token-F1, loss) live in jobs.common.answermetrics."""

from __future__ import annotations

from typing import Any, Sequence

from jobs.common.gate import GATE_KEYS, gate_name


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
