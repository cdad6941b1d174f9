"""Checks on an uploaded fine-tuning file, and the one conversion the pack step needs.

A chat file ({"messages": [...]} per line) gets exactly `ftctl validate-data`'s checks. A
preference file (OpenAI's DPO format: {"input": {"messages"}, "preferred_output",
"non_preferred_output"} per line) is checked line by line and converted, when a DPO job uses it,
to the {"prompt", "chosen", "rejected", "system"} rows of the pack step's dpo format.
"""

from __future__ import annotations

import json
from typing import Any

from jobs.api.errors import bad_param
from jobs.pack.validate import MIN_EXAMPLES, Problem, validate_chat_jsonl

SHOWN_PROBLEMS = 5


def _lines(data: bytes) -> list[tuple[int, bytes]]:
    return [(n, raw) for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1) if raw.strip()]


def is_preference_file(data: bytes) -> bool:
    for _, raw in _lines(data)[:1]:
        try:
            first = json.loads(raw)
        except ValueError:
            return False
        return isinstance(first, dict) and "preferred_output" in first
    return False


def preference_row(example: Any) -> dict[str, str]:
    """One OpenAI preference example as a pack dpo row; ValueError says what is wrong."""
    if not isinstance(example, dict):
        raise ValueError("the line is not a JSON object")
    messages = (example.get("input") or {}).get("messages") if isinstance(example.get("input"), dict) else None
    if not isinstance(messages, list) or not messages:
        raise ValueError("input.messages must be a non-empty list")
    system = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if len(users) != 1 or len(users) + len(system) != len(messages):
        raise ValueError("input.messages must be one user message, after at most one system message")
    row = {"prompt": users[0]}
    if system:
        row["system"] = system[0]
    for key, target in (("preferred_output", "chosen"), ("non_preferred_output", "rejected")):
        out = example.get(key)
        if not (isinstance(out, list) and len(out) == 1 and isinstance(out[0], dict)
                and out[0].get("role") == "assistant" and isinstance(out[0].get("content"), str)
                and out[0]["content"]):
            raise ValueError(f"{key} must be a list of one assistant message with text content")
        row[target] = out[0]["content"]
    if not isinstance(row["prompt"], str) or not row["prompt"]:
        raise ValueError("the user message has no text content")
    return row


def preference_problems(data: bytes) -> list[Problem]:
    problems, count = [], 0
    for number, raw in _lines(data):
        count += 1
        try:
            preference_row(json.loads(raw))
        except ValueError as err:  # json.JSONDecodeError is a ValueError too
            problems.append(Problem(number, "invalid_preference_example", str(err)))
    if count < MIN_EXAMPLES:
        problems.append(Problem(None, "too_few_examples",
                                f"{count} example(s); fine-tuning needs at least {MIN_EXAMPLES}"))
    return problems


def to_dpo_rows(data: bytes) -> bytes:
    rows = [preference_row(json.loads(raw)) for _, raw in _lines(data)]
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


def check_upload(filename: str, data: bytes) -> None:
    """Refuse a file fine-tuning could not use, naming its first problems by line (HTTP 400, param file)."""
    problems = preference_problems(data) if is_preference_file(data) else validate_chat_jsonl(data).problems
    if not problems:
        return
    shown = [f"line {p.line}: {p.kind}: {p.message}" if p.line else f"{p.kind}: {p.message}"
             for p in problems[:SHOWN_PROBLEMS]]
    more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
    raise bad_param("file", f"Invalid file format for fine-tuning: {filename}: {'; '.join(shown)}{more}",
                    code="invalid_file_format")
