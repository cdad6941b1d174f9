"""The backend interface and the reply type every backend returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol, Sequence

from jobs.common.spec import Decoding

Messages = list[dict[str, str]]  # [{"role": "user", "content": "..."}, ...]
OnReply = Callable[[int, "Reply"], None]


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency: float = 0.0  # seconds spent on this request, retries included

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ChatBackend(Protocol):
    """Answers batches of chats. `identity` says what answers (it is part of cache keys)."""

    identity: dict[str, Any]

    def generate(
        self, batch: Sequence[Messages], decoding: Decoding, on_reply: OnReply | None = None
    ) -> list[Reply]:
        """One reply per chat, in order. `on_reply(index, reply)` is called as each one is ready."""
        ...

    def close(self) -> None: ...
