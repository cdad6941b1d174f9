"""Token counts with a model's own tokenizer, for `ftctl validate-data --model DIR`.

A conversation is counted as the model will see it in training: rendered by its chat template
(with the row's tools) and tokenized. The count is never under the plain count of every text in
the conversation (tool call arguments included) plus the data-prep guide's per-message overheads,
so a template that leaves something out, or refuses the conversation, cannot make a row look
shorter than its text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common.errors import InvalidInput
from jobs.pack.validate import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def load_model_tokenizer(path: Path) -> tuple[Any, str]:
    """(tokenizer, name for messages) from a model directory or a GGUF file (or a directory
    holding one GGUF file and no tokenizer files), read locally with no download."""
    from transformers import AutoTokenizer

    gguf = None
    if path.is_file() and path.suffix == ".gguf":
        gguf = path
    elif path.is_dir() and not any((path / f).exists() for f in TOKENIZER_FILES):
        found = sorted(path.glob("*.gguf"))
        if len(found) != 1:
            raise InvalidInput(
                f"--model {path}: no tokenizer files ({', '.join(TOKENIZER_FILES)}) and "
                f"{len(found)} GGUF files; name a model directory or one .gguf file"
            )
        gguf = found[0]
    elif not path.is_dir():
        raise InvalidInput(f"--model {path}: no such model directory or .gguf file")
    try:
        if gguf is not None:
            return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name), f"the tokenizer of {gguf.name}"
        return AutoTokenizer.from_pretrained(path, local_files_only=True), f"the tokenizer of {path.name}"
    except (OSError, ValueError, KeyError) as err:
        raise InvalidInput(f"--model {path}: transformers cannot load a tokenizer from it: {err}") from None


@dataclass
class ModelChatTokens:
    """Callable like validate.chat_tokens: (messages, tools) -> tokens."""

    tokenizer: Any
    name: str

    def _tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _plain(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
        texts = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                 for m in messages for k, v in m.items() if v is not None and k != "weight"]
        if tools:
            texts.append(json.dumps(tools, ensure_ascii=False))
        return sum(map(self._tokens, texts)) + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_REPLY

    def __call__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
        plain = self._plain(messages, tools)
        if not self.tokenizer.chat_template:
            return plain
        try:
            rendered = self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
        except Exception:  # noqa: BLE001 - a template refusing a conversation (raise_exception) counts as plain
            return plain
        return max(self._tokens(rendered), plain)


def model_chat_tokens(path: Path) -> ModelChatTokens:
    tokenizer, name = load_model_tokenizer(path)
    return ModelChatTokens(tokenizer, name)
