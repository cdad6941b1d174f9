"""The promotion gate: a tiny comparison language over evaluate's metrics.

    tunedPassRate >= basePassRate + 0.05 and tunedLoss < baseLoss

Parsed into a tree and evaluated without `eval()`, so a spec can never run code.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any, Callable

# metrics.json keys the gate reads; a gate names them base<Key> / tuned<Key> (passRate: basePassRate).
GENERATION_KEYS = ("passRate", "exactMatch", "tokenF1", "loss", "perplexity")
LABEL_KEYS = ("accuracy", "f1Macro", "f1Micro", "f1Weighted", "precisionMacro", "recallMacro")
GATE_KEYS = GENERATION_KEYS + LABEL_KEYS
# Not per-example statistics: the paired bootstrap gives them no interval.
NO_INTERVAL_KEYS = ("f1Macro", "f1Micro", "f1Weighted", "precisionMacro", "recallMacro")


def gate_name(who: str, key: str) -> str:
    """The gate's name of a metrics.json key for "base" or "tuned": gate_name("tuned", "f1Macro") is tunedF1Macro."""
    return who + key[0].upper() + key[1:]


GATE_METRICS: tuple[str, ...] = tuple(gate_name(who, k) for who in ("base", "tuned") for k in GATE_KEYS)


def measured_keys(train_method: str, labelled: bool) -> tuple[str, ...]:
    """What the evaluate step measures: a classifier's labels; a generative model's answers, and
    when every answer is a label (a label column), the labels it generates as well."""
    if train_method == "classification":
        return ("passRate", "loss", *LABEL_KEYS)
    return GENERATION_KEYS + (LABEL_KEYS if labelled else ())


# What the gguf step measures of each quantization (llama.cpp answers; it scores no reference
# answers, so no loss). A gate names them <quantization in lower case><Key>: q4_k_mPassRate.
QUANT_KEYS = ("passRate", "exactMatch", "tokenF1")


def quant_term(name: str) -> tuple[str, str] | None:
    """(quantization, metrics key) of a quantized metric's name, e.g. ("Q4_K_M", "passRate"), else None."""
    from jobs.common.quant import QUANT_TYPES

    m = re.fullmatch(r"([a-z0-9_]+?)([A-Z][A-Za-z0-9]*)", name)
    if not m:
        return None
    quant, key = m.group(1).upper(), m.group(2)[0].lower() + m.group(2)[1:]
    return (quant, key) if quant in QUANT_TYPES and key in QUANT_KEYS else None


def quantized(comparison: Comparison) -> bool:
    """Whether a clause names a quantization's metric: the gguf step judges it, not evaluate."""
    return any(isinstance(t, str) and quant_term(t) for _, t in (*comparison.left, *comparison.right))


def gate_terms(text: str) -> set[str]:
    return {t for c in parse_gate(text) for _, t in (*c.left, *c.right) if isinstance(t, str)}


def metric_key(name: str) -> str:
    """The metrics.json key of a gate name: metric_key("tunedF1Macro") is f1Macro."""
    bare = name.removeprefix("base").removeprefix("tuned")
    return bare[0].lower() + bare[1:]


def check_measured(text: str, train_method: str, labelled: bool) -> None:
    """Raise ValueError naming each metric of the gate that such a run does not measure."""
    measured = measured_keys(train_method, labelled)
    missing = sorted(t for t in gate_terms(text) if quant_term(t) is None and metric_key(t) not in measured)
    if not missing:
        return
    hint = ""
    if train_method in ("sft", "grpo") and any(metric_key(t) in LABEL_KEYS for t in missing):
        hint = (
            "; a generative run measures the labels it generates when every answer is a label column: "
            "name it in data.sources[].columns, e.g. {text: chunk_text, label: frame_name}"
        )
    raise ValueError(
        f"gate names {', '.join(missing)}, which a {train_method} run does not measure; "
        f"it measures base/tuned {', '.join(gate_name('', k) for k in measured)}{hint}"
    )


def check_confidence(text: str) -> None:
    """Raise ValueError when a confident gate names a metric without a bootstrap interval."""
    no_interval = sorted(t for t in gate_terms(text) if metric_key(t) in NO_INTERVAL_KEYS)
    if no_interval:
        raise ValueError(
            f"{', '.join(no_interval)} has no bootstrap interval (not a per-example statistic); "
            "gate on accuracy, or drop gateConfidence"
        )


_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
_TOKEN = re.compile(r"\s*(>=|<=|==|>|<|\+|-|[A-Za-z][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


@dataclass(frozen=True)
class Comparison:
    left: list[tuple[int, str | float]]  # (sign, metric name or number)
    op: str
    right: list[tuple[int, str | float]]


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"gate: unexpected text at {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _sum(tokens: list[str]) -> list[tuple[int, str | float]]:
    terms: list[tuple[int, str | float]] = []
    sign = 1
    expect_term = True
    for tok in tokens:
        if expect_term:
            if tok in ("+", "-"):
                sign = -sign if tok == "-" else sign
                continue
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", tok):
                if tok not in GATE_METRICS and quant_term(tok) is None:
                    raise ValueError(
                        f"gate: unknown metric {tok!r}; known: {', '.join(GATE_METRICS)}, and of a GGUF "
                        f"quantization <quantization><{'|'.join(gate_name('', k) for k in QUANT_KEYS)}> (q4_k_mPassRate)"
                    )
                terms.append((sign, tok))
            else:
                terms.append((sign, float(tok)))
            sign, expect_term = 1, False
        elif tok in ("+", "-"):
            sign, expect_term = (-1 if tok == "-" else 1), True
        else:
            raise ValueError(f"gate: expected + or - before {tok!r}")
    if expect_term:
        raise ValueError("gate: incomplete expression")
    return terms


def parse_gate(text: str) -> list[Comparison]:
    """Parse a gate; raises ValueError naming the bad part."""
    comparisons = []
    for clause in re.split(r"\s+and\s+", text.strip()):
        toks = _tokens(clause)
        ops = [i for i, t in enumerate(toks) if t in _OPS]
        if len(ops) != 1:
            raise ValueError(f"gate: each clause needs one comparison operator: {clause!r}")
        i = ops[0]
        comparisons.append(Comparison(_sum(toks[:i]), toks[i], _sum(toks[i + 1 :])))
    return comparisons


def _value(terms: list[tuple[int, str | float]], metrics: dict[str, Any]) -> Any:
    total: Any = 0.0
    for sign, term in terms:
        if isinstance(term, str):
            if term not in metrics:
                raise KeyError(term)
            total += sign * metrics[term]
        else:
            total += sign * term
    return total


def margin(comparison: Comparison, metrics: dict[str, Any]) -> Any:
    """left - right of a clause (metrics may be arrays, one value per bootstrap resample)."""
    return _value(comparison.left, metrics) - _value(comparison.right, metrics)


def evaluate_gate(
    text: str,
    metrics: dict[str, float],
    bounds: Callable[[Comparison], tuple[float, float]] | None = None,
    only: Callable[[Comparison], bool] = lambda c: True,
) -> tuple[bool, str]:
    """Return (passed, explanation with the numbers) over the clauses `only` selects (evaluate
    judges the base/tuned clauses, the gguf step those naming a quantization).

    With `bounds` (a clause -> the confidence interval of its margin, left - right), a clause holds
    only when the whole interval does: its lower bound for >= and >, its upper bound for <= and <;
    == holds when the interval contains 0."""
    parts, ok = [], True
    for c in filter(only, parse_gate(text)):
        left, right = _value(c.left, metrics), _value(c.right, metrics)
        passed = _OPS[c.op](left, right)
        shown = f"{left:.4f} {c.op} {right:.4f}"
        if bounds is not None:
            low, high = bounds(c)
            passed = low <= 0 <= high if c.op == "==" else _OPS[c.op](low if c.op in (">=", ">") else high, 0.0)
            shown += f" (margin {left - right:+.4f}, interval [{low:+.4f}, {high:+.4f}])"
        ok = ok and passed
        parts.append(f"{shown}: {'ok' if passed else 'NOT MET'}")
    return ok, "; ".join(parts)
