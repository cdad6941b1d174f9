"""The one shape every input format is read into, before filtering and conversion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Record:
    """One training example.

    `messages` is the conversation, ending with the assistant's answer. Alpaca rows
    keep their instruction/input split so that alpaca output round-trips; labeled
    rows (text, label) and preference rows (prompt, chosen, rejected) are a
    two-message conversation plus `label` or `rejected`.
    """

    id: str
    origin: str  # "file:line" (or "file: item N"), for messages to people
    messages: list[dict[str, Any]]
    instruction: str | None = None
    input: str | None = None
    label: str | None = None
    label_column: str | None = None
    rejected: str | None = None
    reject: str | None = None  # why a reader already knows the row is unusable (eval curation, images)
    tools: list[dict[str, Any]] | None = None  # the functions the conversation may call (OpenAI shape)
    unknown_keys: tuple[str, ...] = ()  # top-level keys the reader did not map, reported as warnings
    split: str | None = None  # train, val or test when its source fixes the split (data.sources[].split)

    @property
    def output(self) -> str:
        content = self.messages[-1].get("content")
        return content if isinstance(content, str) else ""

    @property
    def system(self) -> str | None:
        first = self.messages[0]
        return first.get("content") if first.get("role") == "system" else None

    @property
    def prompt(self) -> str:
        """Everything the model is given: the instruction (and input), or every turn but the
        answer and the system prompt. Dedupe and classification text use it."""
        if self.instruction is not None:
            return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction
        return "\n".join(
            m["content"]
            for m in self.messages[:-1]
            if m.get("role") != "system" and isinstance(m.get("content"), str)
        )


def chat(prompt: str, answer: str, system: str | None = None) -> list[dict[str, Any]]:
    head = [{"role": "system", "content": system}] if system else []
    return head + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
