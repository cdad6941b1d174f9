"""The assistant-only loss mask, token by token, on SmolLM2's real ChatML template."""

from __future__ import annotations

import pytest

from jobs.common.errors import InvalidInput
from jobs.train.chat import FALLBACK_TEMPLATE, _marked_template, chat_encoder, ensure_chat_template

CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "6"},
]
# The same ChatML, with the {% generation %} markers TRL's training templates use.
CHATML_MARKED = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


def pieces(tokenizer, encoded):
    return [(tokenizer.decode([i]), m) for i, m in zip(encoded["input_ids"], encoded["assistant_masks"])]


def test_mask_covers_each_answer_and_its_end_of_turn_token_only(tokenizer):
    assert "<|im_start|>" in tokenizer.chat_template  # SmolLM2 speaks ChatML
    encoded = chat_encoder(tokenizer, assistant_only=True)(CONVERSATION)
    got = pieces(tokenizer, encoded)
    assert "".join(t for t, _ in got) == tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    trained = [t for t, m in got if m]
    assert trained == ["It", " is", " ", "4", ".", "<|im_end|>", "6", "<|im_end|>"]
    # token by token: everything up to and including "assistant\n" is masked, the answer and its
    # <|im_end|> are trained, the newline after <|im_end|> and the next user turn are masked
    text_before_first_answer = "".join(t for t, _ in got[: got.index(("It", 1))])
    assert text_before_first_answer.endswith("<|im_start|>assistant\n")
    assert all(m == 0 for _, m in got[: got.index(("It", 1))])
    end = got.index(("<|im_end|>", 1))
    assert got[end + 1] == ("\n", 0) and got[end + 2] == ("<|im_start|>", 0)
    assert got[-1] == ("\n", 0) and got[-2] == ("<|im_end|>", 1)


def test_generation_markers_give_the_same_mask(tokenizer):
    """Where the template has {% generation %} markers, the tokenizer's own mask is used; same result."""
    by_prefixes = chat_encoder(tokenizer, assistant_only=True)(CONVERSATION)
    marked = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    marked.chat_template = CHATML_MARKED
    by_markers = chat_encoder(marked, assistant_only=True)(CONVERSATION)
    assert _marked_template(marked) == CHATML_MARKED and _marked_template(tokenizer) is None
    assert by_markers == by_prefixes


def test_full_loss_trains_every_token(tokenizer):
    encoded = chat_encoder(tokenizer, assistant_only=False)(CONVERSATION)
    assert set(encoded["assistant_masks"]) == {1}


def test_template_that_rewrites_history_is_refused(tokenizer):
    rewriting = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    # drops every assistant turn but the last, as reasoning templates do with their thoughts
    rewriting.chat_template = (
        "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}"
        "{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(InvalidInput, match="assistantOnlyLoss"):
        chat_encoder(rewriting, assistant_only=True)(CONVERSATION)


def test_model_without_template_gets_plain_headers_and_eos(tokenizer):
    bare = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    bare.chat_template = None
    ensure_chat_template(bare)
    assert bare.chat_template == FALLBACK_TEMPLATE
    got = pieces(bare, chat_encoder(bare, assistant_only=True)(CONVERSATION[1:3]))
    assert [t for t, m in got if m][-1] == bare.eos_token


@pytest.mark.parametrize("assistant_only", [True, False])
def test_a_weight_zero_answer_is_never_trained(tokenizer, assistant_only):
    weighted = [*CONVERSATION[:2], {**CONVERSATION[2], "weight": 0}, *CONVERSATION[3:]]
    got = pieces(tokenizer, chat_encoder(tokenizer, assistant_only=assistant_only)(weighted))
    assert "".join(t for t, _ in got) == tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    trained = [t for t, m in got if m]
    start = [t for t, _ in got].index("It")
    assert [t for t, _ in got[start : start + 6]] == ["It", " is", " ", "4", ".", "<|im_end|>"]
    assert all(m == 0 for _, m in got[start : start + 6])
    if assistant_only:
        assert trained == ["6", "<|im_end|>"]
    else:
        assert "6" in trained and "And" in trained and "system" in trained  # every other token is still trained
