"""The pack step's test split as (prompt messages, expected answer) examples."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jobs.common.errors import InvalidData, MissingInput
from jobs.common.handoff import chat_messages


@dataclass(frozen=True)
class Example:
    id: str
    messages: list[dict[str, str]]  # what the model is given
    expected: str  # the reference answer, or the label for classification
    text: str = ""  # classification input

    @property
    def input(self) -> str:
        """The prompt as a person reads it."""
        if self.text:
            return self.text
        turns = [m for m in self.messages if m["role"] != "system"]
        if len(turns) == 1:
            return turns[0]["content"]
        return "\n".join(f"{m['role']}: {m['content']}" for m in turns)


def to_example(row: dict, fmt: str, where: str) -> Example:
    """The prompt and reference answer, rendered as the train step renders the row."""
    try:
        if fmt in ("openai_chat", "alpaca"):
            messages = chat_messages(row, where)
            if messages[-1]["role"] != "assistant":
                raise InvalidData(f"{where}: the last message must be the assistant's answer")
            return Example(row["id"], [dict(m) for m in messages[:-1]], messages[-1]["content"])
        if fmt == "dpo":
            return Example(row["id"], [{"role": "user", "content": row["prompt"]}], row["chosen"])
        if fmt == "classification":
            return Example(row["id"], [], str(row["label"]), text=row["text"])
    except (KeyError, TypeError) as err:
        raise InvalidData(f"{where}: a {fmt} row needs {err}") from None
    raise InvalidData(f"{where}: unknown test format {fmt!r}")


def read_test_split(path: Path, fmt: str, max_items: int | None) -> list[Example]:
    if not path.is_file():
        raise MissingInput(f"the pack step's output has no {path.name}; evaluate needs its test split")
    examples = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"pack/{path.name} line {lineno}"
        try:
            row = json.loads(line)
        except ValueError as err:
            raise InvalidData(f"{where}: not JSON ({err})") from None
        examples.append(to_example(row, fmt, where))
        if max_items and len(examples) >= max_items:
            break
    if not examples:
        raise InvalidData(
            f"pack/{path.name} is empty: nothing to evaluate (give steps.pack.split.test a share, or more data)"
        )
    return examples
