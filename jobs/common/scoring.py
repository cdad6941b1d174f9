"""Score a model on the test split: its answers, the checks (with the judge's verdicts), exact
match, token-F1 and, where the backend can score reference answers, their NLL.

The evaluate step scores the base and the tuned model with it, the gguf step every quantization,
so all of them are judged by the same checks and decoding.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from jobs.common.answermetrics import exact_match, token_f1
from jobs.common.backends import ChatBackend, Messages
from jobs.common.checks import run_checks
from jobs.common.judge import Case, Judge
from jobs.common.spec import Check, Decoding


class Example(Protocol):
    messages: list[dict[str, str]]
    expected: str


def score_answers(
    backend: ChatBackend,
    examples: Sequence[Example],
    decoding: Decoding,
    checks: list[Check],
    tick: Callable[[], None] = lambda: None,
    judge: Judge | None = None,
) -> list[dict[str, Any]]:
    """One model's answers, check outcomes, text metrics and reference-answer NLL per example."""
    replies = backend.generate([e.messages for e in examples], decoding, lambda i, r: tick())
    scorer: Callable[[list[tuple[Messages, str]]], list[tuple[float, int]]] | None = getattr(backend, "score", None)
    scores = scorer([(e.messages, e.expected) for e in examples]) if scorer else [None] * len(examples)
    cases = [Case(checks, e.messages, r.text, e.expected) for e, r in zip(examples, replies)]
    verdicts = judge.verdicts(cases) if judge else [[] for _ in examples]
    rows = []
    for example, reply, score, judged in zip(examples, replies, scores, verdicts):
        outcomes = run_checks(checks, reply.text, example.expected, {}, judged)
        row = {
            "answer": reply.text,
            "checks": [o.to_json() for o in outcomes],
            "passed": all(o.passed for o in outcomes),
            "exactMatch": exact_match(reply.text, example.expected),
            "tokenF1": round(token_f1(reply.text, example.expected), 4),
            "latency": round(reply.latency, 4),
        }
        if score is not None:
            row |= {"nll": round(score[0], 4), "tokens": score[1]}
        if judged:
            row["judgePassed"] = all(v.passed for v in judged)
        rows.append(row)
    return rows


def per_check(rows: list[dict[str, Any]]) -> dict[str, float]:
    totals: dict[str, list[int]] = {}
    for row in rows:
        for o in row["checks"]:
            totals.setdefault(o["check"], []).append(int(o["passed"]))
    return {name: round(sum(v) / len(v), 4) for name, v in totals.items()}
