"""A GGUF file run through llama.cpp (llama-cpp-python), one chat at a time."""

from __future__ import annotations

import time
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

    def generate(
        self, batch: Sequence[Messages], decoding: Decoding, on_reply: OnReply | None = None
    ) -> list[Reply]:
        replies = []
        for index, messages in enumerate(batch):
            started = time.perf_counter()
            out = self.llm.create_chat_completion(
                messages=messages,
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

    def close(self) -> None:
        self.llm.close()
