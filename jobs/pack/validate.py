"""Checks for OpenAI chat fine-tuning files (JSONL, one {"messages": [...]} per line).

The per-example checks are those of OpenAI's chat fine-tuning data-prep guide:
a line that is not a dict, missing or empty messages, a message without role or
content, unrecognized message keys and roles, missing content, no assistant
message, and a `weight` other than 0 or 1. Tool use is OpenAI's current shape: assistant
`tool_calls` (content may then be null), `tool` messages with their `tool_call_id`, and the
legacy `function_call` / `function` role. File-level checks add what the
fine-tuning API refuses as well: fewer than 10 examples and examples over a
token limit. Tokens are counted with cl100k_base (see jobs.pack.tokens), with no
download; without that tokenizer the count is an upper bound, never an under-count.

Everything here is pure: bytes in, problems out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobs.pack.tokens import count_tokens, tokenizer_name

MIN_EXAMPLES = 10
# OpenAI's per-example limit for gpt-3.5-turbo in its data-prep guide.
DEFAULT_MAX_TOKENS = 16_385
MESSAGE_KEYS = frozenset({"role", "content", "name", "function_call", "tool_calls", "tool_call_id", "weight"})
ROLES = ("system", "user", "assistant", "function", "tool")
# The guide's per-message and per-reply overheads of the chat format.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_PER_REPLY = 3

def chat_tokens(messages: list[dict[str, Any]]) -> int:
    """Tokens of a conversation, counted the way the data-prep guide does."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                total += count_tokens(value)
            if key == "name":
                total += TOKENS_PER_NAME
    return total


# (messages, tools) -> tokens: cl100k_base by default, a model's own with validate-data --model.
ChatTokens = Callable[[list[dict[str, Any]], "list[dict[str, Any]] | None"], int]


def _cl100k_chat_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    return chat_tokens(messages)


@dataclass(frozen=True)
class Problem:
    line: int | None  # None for problems of the whole file
    kind: str
    message: str


@dataclass
class Validation:
    examples: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(p.kind for p in self.problems)

    @property
    def ok(self) -> bool:
        return not self.problems


def _is_weight(value: Any) -> bool:
    return type(value) in (int, float) and value in (0, 1)


def message_problems(index: int, message: Any) -> list[tuple[str, str]]:
    """(kind, message) for each problem of `messages[index]`."""
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        return [("message_not_dict", f"{where} is {type(message).__name__}, not an object")]
    found = []
    missing = [k for k in ("role", "content") if k not in message]
    if missing:
        found.append(("message_missing_key", f"{where} has no {' or '.join(missing)}"))
    unknown = sorted(str(k) for k in message if k not in MESSAGE_KEYS)
    if unknown:
        found.append(
            ("message_unrecognized_key", f"{where} has unrecognized key(s) {', '.join(unknown)} "
             f"(allowed: {', '.join(sorted(MESSAGE_KEYS))})")
        )
    if "role" in message and message["role"] not in ROLES:
        found.append(
            ("unrecognized_role", f"{where} has role {message['role']!r} (expected one of {', '.join(ROLES)})")
        )
    if "content" in message:
        content = message["content"]
        # A function or tool call may stand in for the text of an assistant message.
        calls = message.get("function_call") or message.get("tool_calls")
        if not (isinstance(content, str) and content) and not (content is None and calls):
            found.append(("missing_content", f"{where} has no text content (content is {content!r:.40})"))
    if message.get("role") == "tool" and not isinstance(message.get("tool_call_id"), str):
        found.append(("missing_tool_call_id", f"{where} is a tool result without the tool_call_id it answers"))
    if "weight" in message and not _is_weight(message["weight"]):
        found.append(("invalid_weight", f"{where} has weight {message['weight']!r}; it must be 0 or 1"))
    return found


def example_problems(example: Any) -> list[tuple[str, str]]:
    """(kind, message) for each problem of one parsed line."""
    if not isinstance(example, dict):
        return [("data_type", f"the line is a JSON {type(example).__name__}, not an object")]
    if example.get("messages") is None:
        return [("missing_messages_list", "no 'messages' list")]
    messages = example["messages"]
    if not isinstance(messages, list):
        return [("messages_not_list", f"'messages' is {type(messages).__name__}, not a list")]
    if not messages:
        return [("empty_messages", "'messages' is empty")]
    found = []
    for i, message in enumerate(messages):
        found += message_problems(i, message)
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        found.append(("example_missing_assistant_message", "no assistant message"))
    return found


def validate_chat_jsonl(
    data: bytes, max_tokens: int = DEFAULT_MAX_TOKENS, training: bool = True,
    count: ChatTokens | None = None, counted_with: str | None = None,
) -> Validation:
    """All problems of a chat fine-tuning file, each with its 1-based line number. The minimum
    number of examples is a rule for training files only, not for validation files. `count`
    (named `counted_with` in messages) counts a conversation's tokens; cl100k_base by default."""
    count = count or _cl100k_chat_tokens
    counted_with = counted_with or tokenizer_name()
    result = Validation()
    lines = data.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()  # the newline that ends the last line
    for number, raw in enumerate(lines, start=1):
        problems = _line_problems(raw, number, max_tokens, count, counted_with)
        result.examples += not any(p.kind == "blank_line" for p in problems)
        result.problems += problems
    if training and result.examples < MIN_EXAMPLES:
        result.problems.append(
            Problem(None, "too_few_examples",
                    f"{result.examples} example(s); fine-tuning needs at least {MIN_EXAMPLES}")
        )
    return result


def _line_problems(raw: bytes, number: int, max_tokens: int, count: ChatTokens, counted_with: str) -> list[Problem]:
    if number == 1:
        raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return [Problem(number, "not_utf8", f"byte {err.start + 1} of the line is not valid UTF-8")]
    if not text.strip():
        return [Problem(number, "blank_line", "blank line; every line must be one JSON object")]
    try:
        example = json.loads(text)
    except (ValueError, RecursionError) as err:
        where = f" (column {err.colno})" if isinstance(err, json.JSONDecodeError) else ""
        return [Problem(number, "invalid_json", f"not valid JSON{where}: {_reason(err)}")]
    found = [Problem(number, kind, msg) for kind, msg in example_problems(example)]
    if not found and example["messages"][-1].get("role") != "assistant":
        # pack refuses these too: nothing after the last answer would be learned from
        found.append(Problem(number, "last_message_not_assistant", "the last message is not the assistant's"))
    if not found:
        tokens = count(example["messages"], example.get("tools"))
        if tokens > max_tokens:
            found.append(
                Problem(number, "too_long", f"{tokens} tokens ({counted_with}), over the limit of {max_tokens}")
            )
    return found


def _reason(err: Exception) -> str:
    return err.msg if isinstance(err, json.JSONDecodeError) else str(err) or type(err).__name__


def format_report(path: str, result: Validation, limit_per_kind: int = 20) -> list[str]:
    """Lines for people: each problem as `path:line: kind: message`, then counts per kind."""
    out, shown = [], Counter()
    for p in result.problems:
        shown[p.kind] += 1
        if shown[p.kind] <= limit_per_kind:
            loc = f"{path}:{p.line}" if p.line is not None else path
            out.append(f"{loc}: {p.kind}: {p.message}")
    counts = result.counts
    for kind, n in sorted(counts.items()):
        if n > limit_per_kind:
            out.append(f"... {n - limit_per_kind} more {kind} problem(s) not shown")
    if counts:
        out.append(f"{path}: {result.examples} example(s), {sum(counts.values())} problem(s):")
        out += [f"  {kind}: {n}" for kind, n in sorted(counts.items())]
    else:
        out.append(f"{path}: {result.examples} example(s), no problems found")
    return out

