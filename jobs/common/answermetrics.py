"""Metrics of a model's answers against reference answers, shared by every step that scores
answers (evaluate, and gguf for its quantizations): pure functions, no model.

exact match and token-F1 use SQuAD's answer normalization (lower case, no
punctuation, no articles, single spaces). Loss is the mean negative
log-likelihood per reference-answer token; perplexity is exp(loss); a model that
cannot score reference answers (llama.cpp here) has neither.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any, Sequence

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
    """Aggregate one model's per-example results: passed, exactMatch, tokenF1, nll, tokens (and
    judgePassed: the share whose judge checks all passed)."""
    nll = sum(r["nll"] for r in rows if r.get("nll") is not None)
    tokens = sum(r["tokens"] for r in rows if r.get("nll") is not None)
    loss = nll / tokens if tokens else None
    return {
        "passRate": round(_mean([float(r["passed"]) for r in rows]), 4),
        "exactMatch": round(_mean([r["exactMatch"] for r in rows]), 4),
        "tokenF1": round(_mean([r["tokenF1"] for r in rows]), 4),
        "loss": round(loss, 4) if loss is not None else None,
        "perplexity": round(math.exp(min(loss, 700)), 4) if loss is not None else None,
    } | ({"judgePassRate": round(_mean([float(r["judgePassed"]) for r in rows]), 4)} if rows and "judgePassed" in rows[0] else {})
