"""The LLM judge: a model grades answers against the rubric of each `type: judge` check.

The judge sees the conversation, the reference answer (when there is one), the answer and the
rubric, and replies with JSON, `{"verdict": "pass" | "fail", "reason": "..."}`. Its requests
go through the same backends and the same answer cache as the eval step's questions (mode
"judge"), so an answer graded once is not graded again while rubric, judge and its decoding
stay the same. The eval, evaluate and gguf steps ask for a batch's verdicts first and then run
the checks (jobs.common.checks) with them.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from jobs.common.answercache import AnswerCache, answer_key
from jobs.common.backends import ChatBackend, Messages, Reply
from jobs.common.checks import Verdict
from jobs.common.spec import Check, Decoding, Judge as JudgeSpec

if TYPE_CHECKING:
    from jobs.common.stepctx import StepContext

MODE = "judge"
SYSTEM = (
    "You grade an assistant's answer against a rubric. Judge only what the rubric asks. "
    'Reply with JSON only: {"verdict": "pass" or "fail", "reason": "one short sentence"}.'
)
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_WORD = re.compile(r"^\W*(pass|fail)\b", re.IGNORECASE)


def judge_prompt(rubric: str, messages: Messages, expected: str | None, response: str) -> Messages:
    conversation = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    parts = [f"Rubric:\n{rubric}", f"Conversation:\n{conversation}"]
    if expected is not None:
        parts.append(f"Reference answer:\n{expected}")
    parts.append(f"Answer to grade:\n{response}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_verdict(text: str) -> Verdict:
    """The verdict in a judge's reply: its JSON object, else a leading pass/fail word.
    A reply with neither is a failed, unreadable verdict, so it is counted, never skipped."""
    found = _OBJECT.search(text)
    if found:
        try:
            data = json.loads(found.group(0))
        except ValueError:
            data = None
        if isinstance(data, dict) and str(data.get("verdict", "")).strip().lower() in ("pass", "fail"):
            return Verdict(str(data["verdict"]).strip().lower() == "pass", str(data.get("reason", ""))[:500])
    word = _WORD.match(text)
    if word:
        return Verdict(word.group(1).lower() == "pass", text[word.end():].strip(" :.-\n")[:500])
    return Verdict(False, " ".join(text.split())[:200], readable=False)


@dataclass(frozen=True)
class Case:
    """One answer to grade with every judge check among `checks`."""

    checks: Sequence[Check]
    messages: Messages
    response: str
    expected: str | None


def needs_judge(checks: Sequence[Check]) -> bool:
    return any(c.type == "judge" for c in checks)


class Judge:
    def __init__(self, backend: ChatBackend, decoding: Decoding, cache: AnswerCache | None):
        self.backend = backend
        self.decoding = decoding
        self.cache = cache
        self.calls = 0
        self.unreadable = 0

    @property
    def identity(self) -> dict[str, Any]:
        return self.backend.identity

    def verdicts(self, cases: Sequence[Case]) -> list[list[Verdict]]:
        """Per case, the verdicts of its judge checks in order (what run_checks takes)."""
        prompts = [
            (n, judge_prompt(c.rubric, case.messages, case.expected, case.response))
            for n, case in enumerate(cases)
            for c in case.checks
            if c.type == "judge"
        ]
        keys = [answer_key(p, self.decoding, self.identity, MODE) for _, p in prompts]
        replies: list[Reply | None] = [self.cache.get(k) if self.cache else None for k in keys]
        todo = [i for i, r in enumerate(replies) if r is None]

        def on_reply(j: int, reply: Reply) -> None:
            replies[todo[j]] = reply
            if self.cache:
                self.cache.put(keys[todo[j]], reply)

        if todo:
            try:
                self.backend.generate([prompts[i][1] for i in todo], self.decoding, on_reply)
            finally:
                if self.cache:
                    self.cache.flush()  # keep the verdicts paid for, also when a later request failed
        self.calls += len(todo)
        out: list[list[Verdict]] = [[] for _ in cases]
        for (n, _), reply in zip(prompts, replies):
            verdict = parse_verdict(reply.text)  # type: ignore[union-attr]
            self.unreadable += not verdict.readable
            out[n].append(verdict)
        return out

    def stats(self) -> dict[str, Any]:
        cache = self.cache
        return {
            "model": self.identity,
            "calls": self.calls,
            "cacheHits": cache.hits if cache else 0,
            "unreadable": self.unreadable,
        }

    def close(self) -> None:
        self.backend.close()


def open_judge(cfg: JudgeSpec, ctx: StepContext) -> Judge:
    """The judge a step's `judge:` block names; a baseModel judge is the run's base model."""
    from jobs.common.backends.factory import open_backend
    from jobs.common.modelload import base_model_dir

    backend = open_backend(
        cfg.backend,
        model=ctx.spec.model,
        base_dir=ctx.base_dir,
        resolve=ctx.resolve,
        hf_model_dir=lambda: base_model_dir(ctx),
        concurrency=cfg.concurrency,
        timeout=cfg.timeout_seconds,
        retries=cfg.retries,
    )
    return Judge(backend, cfg.decoding, AnswerCache(ctx.store, backend.identity, MODE) if cfg.cache else None)


def agreement(rows: Sequence[Sequence[dict[str, Any]]]) -> dict[str, Any] | None:
    """How often the judge agrees with the deterministic checks, over the rows that have both.

    `rows` are rows' check outcomes (Outcome.to_json()). Per row, the judge passes when all its
    judge checks pass and the deterministic side when all the others do. Cohen's kappa corrects
    the agreement rate for chance; it is None when neither side ever varies (undefined)."""
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    pairs = []
    for outcomes in rows:
        judged = [o["passed"] for o in outcomes if o["type"] == "judge"]
        others = [o["passed"] for o in outcomes if o["type"] != "judge"]
        if judged and others:
            pairs.append((int(all(judged)), int(all(others))))
    if not pairs:
        return None
    judge, checks = zip(*pairs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = float(cohen_kappa_score(judge, checks, labels=[0, 1]))
    return {
        "items": len(pairs),
        "agreement": round(sum(j == c for j, c in pairs) / len(pairs), 4),
        "kappa": None if kappa != kappa else round(kappa, 4),  # nan: undefined
        "judgePassRate": round(sum(judge) / len(pairs), 4),
        "checksPassRate": round(sum(checks) / len(pairs), 4),
    }
