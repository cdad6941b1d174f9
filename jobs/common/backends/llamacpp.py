"""A GGUF file run through llama.cpp (llama-cpp-python), one chat at a time: the eval steps' backend
and what the API's /v1/chat/completions answers with."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Sequence

from jobs.common.backends.base import Messages, OnReply, Reply
from jobs.common.errors import InvalidInput, MissingInput
from jobs.common.spec import Decoding


class LlamaCppBackend:
    def __init__(self, model_path: Path, *, n_ctx: int = 2048, seed: int = 42, identity: dict[str, Any] | None = None):
        try:
            import llama_cpp
        except ImportError:
            raise MissingInput(
                "the gguf backend needs llama-cpp-python: pip install 'finetune-operator[llamacpp]'"
            ) from None
        if not model_path.is_file():
            raise MissingInput(f"gguf: no such file {model_path}")
        try:
            self.llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=n_ctx, seed=seed, verbose=False)
        except ValueError as err:
            raise InvalidInput(f"gguf: llama.cpp cannot load {model_path}: {err}") from None
        self.identity = identity or {"kind": "gguf", "path": str(model_path)}
        self.lock = threading.Lock()

    def generate(
        self, batch: Sequence[Messages], decoding: Decoding, on_reply: OnReply | None = None
    ) -> list[Reply]:
        replies = []
        for index, messages in enumerate(batch):
            started = time.perf_counter()
            out = self.chat(
                messages,
                temperature=decoding.temperature,
                top_p=decoding.top_p,
                max_tokens=decoding.max_new_tokens,
            )
            usage = out.get("usage") or {}
            reply = Reply(
                text=out["choices"][0]["message"].get("content") or "",
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                latency=time.perf_counter() - started,
            )
            replies.append(reply)
            if on_reply:
                on_reply(index, reply)
        return replies

    def chat(self, messages: Messages, *, stream: bool = False, **options: Any) -> Any:
        """llama.cpp's OpenAI-shaped chat completion (an iterator of chunks when `stream`), rendered
        with the GGUF's own chat template. One at a time: a llama.cpp context is not thread-safe."""
        if not stream:
            with self.lock:
                return self.llm.create_chat_completion(messages=messages, **options)
        return self._stream(messages, options)

    def _stream(self, messages: Messages, options: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self.lock:  # held until the last chunk; a plain Lock, so any thread may resume the iterator
            yield from self.llm.create_chat_completion(messages=messages, stream=True, **options)

    def close(self) -> None:
        self.llm.close()
