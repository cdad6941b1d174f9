"""Checks on a model's answer: exact, contains, regex, json_valid, any_of (with synonyms), judge.

Shared by the eval and evaluate steps, so a change here changes both steps'
cache keys. exact/contains/any_of without a value compare against the item's
expected answer. Text is compared with whitespace collapsed, and case-folded
unless `ignoreCase: false`. A judge check's outcome is the judge model's verdict
(jobs.common.judge asks for the verdicts of a batch first, then the checks run here).

Synonyms are a JSON object of groups, `{"Berlin": ["Berlin city", "capital of Germany"]}`.
A group applies to a candidate that equals its key or any of its members. The
local override file is merged over the shared one key by key (its list
replaces the shared list), so a team can narrow or extend a group locally.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from jobs.common.errors import InvalidInput
from jobs.common.spec import Check

DEFAULT_CHECKS = (Check(type="any_of"),)  # an item with only an expected answer: it, or a synonym
_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)

Synonyms = dict[str, list[str]]


def _norm(text: str, ignore_case: bool) -> str:
    text = " ".join(text.split())
    return text.casefold() if ignore_case else text


def load_synonyms(shared: Path | None, override: Path | None) -> Synonyms:
    merged: Synonyms = {}
    for path in (shared, override):
        if path is None:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InvalidInput(f"synonyms file {path}: {err}") from None
        if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values()
        ):
            raise InvalidInput(f'synonyms file {path}: must be a JSON object of lists, {{"term": ["synonym", ...]}}')
        merged.update(data)
    return merged


def expand(candidates: list[str], synonyms: Synonyms) -> list[str]:
    """The candidates plus every synonym of each (groups match case-insensitively)."""
    out = list(candidates)
    for cand in candidates:
        key = _norm(cand, True)
        for term, group in synonyms.items():
            members = [term, *group]
            if key in (_norm(m, True) for m in members):
                out += [m for m in members if m not in out]
    return out


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _mentions(response: str, phrase: str) -> bool:
    """`phrase` occurs in `response` as whole words (so "4" is not found in "14").

    A plain scan, not a regex: every expected answer is a new pattern, and compiling one per
    item costs more than the rest of a cached eval."""
    start = response.find(phrase)
    while start != -1:
        end = start + len(phrase)
        left = not _is_word(phrase[0]) or start == 0 or not _is_word(response[start - 1])
        right = not _is_word(phrase[-1]) or end == len(response) or not _is_word(response[end])
        if left and right:
            return True
        start = response.find(phrase, start + 1)
    return False


def _json_valid(response: str) -> bool:
    fenced = _FENCE.match(response)
    try:
        json.loads(fenced.group(1) if fenced else response)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Verdict:
    """The judge model's grade of one answer against one rubric."""

    passed: bool
    reason: str = ""
    readable: bool = True  # False: the judge's reply held no verdict, which counts as a fail


@dataclass(frozen=True)
class Outcome:
    spec: Check
    passed: bool
    detail: str = ""

    @property
    def type(self) -> str:
        return self.spec.type

    def to_json(self) -> dict[str, Any]:
        """The check itself (so it can be run again) and how it went."""
        return {
            "check": label(self.spec),
            **self.spec.model_dump(mode="json", by_alias=True),
            "passed": self.passed,
            "detail": self.detail,
        }


def check_of(outcome: dict[str, Any]) -> Check:
    """The check an outcome line came from."""
    return Check.model_validate({k: outcome[k] for k in ("type", "value", "values", "ignoreCase", "rubric") if k in outcome})


def needs_expected(check: Check) -> bool:
    return check.type in ("exact", "contains", "any_of") and check.value is None and not check.values


def label(check: Check) -> str:
    if check.type == "judge":
        return f"judge:{check.rubric[:60]}"
    target = check.value if check.value is not None else ("|".join(check.values) if check.values else "expected")
    return check.type if check.type == "json_valid" else f"{check.type}:{target[:60]}"


def run_check(
    check: Check, response: str, expected: str | None, synonyms: Synonyms, verdict: Verdict | None = None
) -> Outcome:
    ic = check.ignore_case
    if check.type == "judge":
        if verdict is None:
            raise InvalidInput(f"check {label(check)} needs the judge's verdict (set the step's judge)")
        return Outcome(check, verdict.passed, verdict.reason if verdict.readable else f"unreadable verdict: {verdict.reason}")
    target = check.value if check.value is not None else expected
    if needs_expected(check) and expected is None:
        raise InvalidInput(f"check {label(check)} needs the item's expected answer")
    if check.type == "exact":
        passed = _norm(response, ic) == _norm(target, ic)
        return Outcome(check, passed)
    if check.type == "contains":
        passed = _norm(target, ic) in _norm(response, ic)
        return Outcome(check, passed)
    if check.type == "regex":
        passed = re.search(check.value, response, re.IGNORECASE if ic else 0) is not None
        return Outcome(check, passed)
    if check.type == "json_valid":
        return Outcome(check, _json_valid(response))
    # any_of: the listed values, or the expected answer, each with its synonyms
    candidates = expand(check.values or [target], synonyms)
    said = _norm(response, ic)
    hit = next((c for c in candidates if c.strip() and _mentions(said, _norm(c, ic))), None)
    return Outcome(check, hit is not None, f"matched {hit!r}" if hit else "")


def run_checks(
    checks: list[Check], response: str, expected: str | None, synonyms: Synonyms, verdicts: Sequence[Verdict] = ()
) -> list[Outcome]:
    """Every check's outcome; the n-th judge check gets the n-th verdict."""
    judged = iter(verdicts)
    return [run_check(c, response, expected, synonyms, next(judged, None) if c.type == "judge" else None) for c in checks]
