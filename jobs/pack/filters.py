"""Row filters applied before dedupe; each dropped row gets one reason."""

from __future__ import annotations

from jobs.pack.conversations import uses_tools
from jobs.pack.records import Record
from jobs.pack.tokens import count_tokens
from jobs.pack.validate import chat_tokens, example_problems

REASONS = {
    "not_passed": "the eval item did not pass its checks (curate: passed)",
    "no_expected": "the eval item has no expected answer (curate: expected)",
    "image_content": "a message holds an image part; text fine-tuning cannot train on it",
    "tools_need_chat": "tool calls and their results need steps.pack.format openai_chat",
    "invalid_message": "a turn fails the chat checks of ftctl validate-data (e.g. an empty turn)",
    "empty_prompt": "no prompt text",
    "empty_output": "no answer text",
    "short_output": "answer of fewer cl100k_base tokens than minOutputTokens",
    "too_long": "over maxTokens (cl100k_base tokens)",
    "duplicate": "same normalized instruction as an earlier row",
    "near_duplicate": "token Jaccard with an earlier row of the same label >= nearDupThreshold",
    "held_out_copy": "same or near-same prompt as a row of a source fixed to the test or val split (that row is kept)",
    "label_conflict": "same normalized text as an earlier row with another label (the first label is kept)",
}


def row_problem(record: Record, fmt: str, min_output_tokens: int, max_tokens: int) -> str | None:
    """Why `record` is dropped, or None. minOutputTokens applies to free-text answers, not to
    labels (a class name is short by nature). Tokens, not characters: a complete Chinese answer
    of ten characters is as long as an English one of forty."""
    if record.reject:
        return record.reject
    if fmt != "openai_chat" and (record.tools or uses_tools(record.messages)):
        return "tools_need_chat"
    if not record.prompt.strip():
        return "empty_prompt"
    answer = record.output.strip()
    if not answer:
        return "empty_output"
    if fmt != "classification" and record.label is None and count_tokens(answer) < min_output_tokens:
        return "short_output"
    if fmt == "openai_chat" and example_problems({"messages": record.messages}):
        return "invalid_message"
    if _over_limit(record, max_tokens):
        return "too_long"
    return None


def _over_limit(record: Record, max_tokens: int) -> bool:
    texts = [v for m in record.messages for v in m.values() if isinstance(v, str)]
    if record.rejected:
        texts.append(record.rejected)
    # A token holds at least one UTF-8 byte, so most rows need no counting.
    if sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) + 4 * len(record.messages) + 3 <= max_tokens:
        return False
    return chat_tokens(record.messages) + (count_tokens(record.rejected) if record.rejected else 0) > max_tokens
