"""Model backends: one small interface over everything that can answer a chat.

    backend.generate(batch_of_messages, decoding, on_reply=None) -> list[Reply]

Implementations: an OpenAI-compatible HTTP endpoint (`http`), an ASGI app
called in-process (`asgi`), a local Hugging Face model with an optional LoRA
adapter (`hf`) and a GGUF file through llama.cpp (`llamacpp`). The eval and
evaluate steps and `ftctl chat` use them through `open_backend` or the
implementation modules; heavy libraries are imported only by the backend that
needs them.
"""

from jobs.common.backends.base import ChatBackend, Messages, Reply

__all__ = ["ChatBackend", "Messages", "Reply"]
