"""Records to output rows: openai_chat, alpaca, classification, dpo. Every row has an "id"."""

from __future__ import annotations

from typing import Any

from jobs.common.errors import InvalidData
from jobs.pack.records import Record

FORMATS = ("openai_chat", "alpaca", "classification", "dpo")


def check_convertible(records: list[Record], fmt: str) -> None:
    """DPO output needs preference rows; say so once, naming the first row that is not one."""
    if fmt == "dpo":
        first = next((r for r in records if r.rejected is None), None)
        if first is not None:
            raise InvalidData(
                f"{first.origin}: steps.pack.format dpo needs preference rows (prompt, chosen, "
                "rejected); read such files with format: dpo"
            )


def label_of(record: Record) -> str:
    """The class of a row: its label column, else the answer."""
    return record.label if record.label is not None else record.output.strip()


def _alpaca_parts(record: Record) -> tuple[str, str]:
    """(instruction, input): the last turn before the answer is the instruction; earlier turns
    of a longer conversation become the input, one `role: content` line each."""
    if record.instruction is not None:
        return record.instruction, record.input or ""
    turns = [
        m for m in record.messages[:-1] if m.get("role") != "system" and isinstance(m.get("content"), str)
    ]
    if not turns:
        return "", ""
    context = "\n".join(f"{m['role']}: {m['content']}" for m in turns[:-1])
    return turns[-1]["content"], context


def _history(record: Record) -> list[list[str]] | None:
    """Earlier turns as alpaca's [[instruction, output], ...] when they alternate user/assistant."""
    turns = [m for m in record.messages if m.get("role") != "system"]
    pairs = [turns[i : i + 2] for i in range(0, len(turns) - 2, 2)]
    if len(turns) % 2 or not pairs:
        return None
    if any([m.get("role") for m in pair] != ["user", "assistant"] for pair in pairs):
        return None
    return [[user["content"], assistant["content"]] for user, assistant in pairs]


def _dpo_row(record: Record) -> dict[str, Any]:
    """Strings for a one-turn prompt; TRL's conversational shape when there is a system prompt,
    earlier turns or tools, so none of them is lost."""
    prompt = record.messages[:-1]
    if len(prompt) == 1 and prompt[0].get("role") == "user" and not record.tools:
        return {"id": record.id, "prompt": record.prompt, "chosen": record.output, "rejected": record.rejected}
    row = {
        "id": record.id, "prompt": prompt, "chosen": [record.messages[-1]],
        "rejected": [{"role": "assistant", "content": record.rejected}],
    }
    return {**row, "tools": record.tools} if record.tools else row


def to_row(record: Record, fmt: str, system_prompt: str | None = None) -> dict[str, Any]:
    if fmt == "openai_chat":
        messages = record.messages
        if system_prompt and record.system is None:
            messages = [{"role": "system", "content": system_prompt}, *messages]
        row = {"id": record.id, "messages": messages}
        return {**row, "tools": record.tools} if record.tools else row
    if fmt == "alpaca":
        # Alpaca rows keep their history; a chat's earlier turns go into the input, as before.
        history = _history(record) if record.instruction is not None else None
        instruction, extra = _alpaca_parts(record)
        row = {"id": record.id, "instruction": instruction, "input": extra, "output": record.output}
        if record.system:
            row["system"] = record.system
        return {**row, "history": history} if history else row
    if fmt == "classification":
        return {"id": record.id, "text": record.prompt, "label": label_of(record)}
    if fmt == "dpo":
        return _dpo_row(record)
    raise InvalidData(f"steps.pack.format: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
