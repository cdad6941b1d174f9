"""The eval set: JSONL, one item per line.

    {"id": "capital-de", "messages": [{"role": "user", "content": "Capital of Germany?"}],
     "expected": "Berlin", "checks": [{"type": "any_of"}], "tags": ["geo"]}

An item needs an expected answer, its own checks, or step-level checks that
need no expected answer. Bad lines are collected with their line numbers, so a
user fixes them all in one go.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jobs.common.checks import DEFAULT_CHECKS, label, needs_expected
from jobs.common.errors import InvalidData
from jobs.common.spec import Check

SHOWN_ERRORS = 20


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1)
    expected: str | None = None
    checks: list[Check] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _asks(self) -> Item:
        if self.messages[-1].role == "assistant":
            raise ValueError("messages end with an assistant turn; put the answer in expected")
        return self

    def chat(self) -> list[dict[str, str]]:
        return [m.model_dump() for m in self.messages]

    def effective_checks(self, defaults: list[Check]) -> list[Check]:
        return list(self.checks or defaults or DEFAULT_CHECKS)


@dataclass(frozen=True)
class Malformed:
    line: int
    error: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}"


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def parse_items(text: str, default_checks: list[Check], judged: bool = False) -> tuple[list[Item], list[Malformed]]:
    """`judged`: the step has a judge, so items may carry judge checks."""
    items: list[Item] = []
    bad: list[Malformed] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = Item.model_validate(json.loads(line))
        except json.JSONDecodeError as err:
            bad.append(Malformed(lineno, f"not JSON ({err.msg} at column {err.colno})"))
            continue
        except ValidationError as err:
            bad.append(Malformed(lineno, _first_error(err)))
            continue
        if item.id in seen:
            bad.append(Malformed(lineno, f"duplicate id {item.id!r} (first on line {seen[item.id]})"))
            continue
        if not judged and any(c.type == "judge" for c in item.effective_checks(default_checks)):
            bad.append(Malformed(lineno, f"item {item.id!r} has a judge check, which needs steps.eval.judge"))
            continue
        if item.expected is None:
            missing = [label(c) for c in item.effective_checks(default_checks) if needs_expected(c)]
            if missing:
                bad.append(Malformed(lineno, f"item {item.id!r} has no expected answer, which {', '.join(missing)} needs"))
                continue
        seen[item.id] = lineno
        items.append(item)
    return items, bad


def load_items(
    path: Path, default_checks: list[Check], allow_partial: bool, judged: bool = False
) -> tuple[list[Item], list[Malformed]]:
    """The valid items and the malformed lines; raises InvalidData unless allowPartial covers them."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InvalidData(f"{path}: not UTF-8 text ({err})") from None
    items, bad = parse_items(text, default_checks, judged)
    if bad and not allow_partial:
        listed = "\n  ".join(str(b) for b in bad[:SHOWN_ERRORS])
        more = f"\n  ... and {len(bad) - SHOWN_ERRORS} more" if len(bad) > SHOWN_ERRORS else ""
        raise InvalidData(
            f"{path}: {len(bad)} malformed item(s) (set allowPartial: true to run the valid ones):\n  {listed}{more}"
        )
    if not items:
        raise InvalidData(f"{path}: no valid items")
    return items, bad
