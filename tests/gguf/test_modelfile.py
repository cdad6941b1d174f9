"""The Modelfile: TEMPLATE derived from the tokenizer's Jinja template, stop tokens, SYSTEM, num_ctx.

Go templates are rendered by Go's text/template (what Ollama runs) and compared
with the Jinja template as transformers renders it.
"""

from __future__ import annotations

import re

import jinja2
import pytest

from jobs.gguf.modelfile import (
    build_modelfile,
    go_template,
    modelfile_for_model,
    probe_chat_format,
)

SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Where is the treasure?\nTell me."},
        {"role": "assistant", "content": "Arr, under the palm tree."},
        {"role": "user", "content": "Which {{ palm }} tree?"},
    ],
    [
        {"role": "user", "content": "  leading and trailing spaces  "},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Thanks"},
    ],
]


def template_text(modelfile: str) -> str:
    return re.search(r'^TEMPLATE """(.*?)"""$', modelfile, re.S | re.M).group(1)


def with_system(conv, system):
    """What Ollama does with a Modelfile SYSTEM: put it first when the conversation has none."""
    return conv if conv[0]["role"] == "system" or not system else [{"role": "system", "content": system}, *conv]


@pytest.fixture(scope="module")
def smollm2(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


@pytest.fixture(scope="module")
def smollm2_modelfile(smollm2_tokenizer_dir):
    return modelfile_for_model(smollm2_tokenizer_dir, gguf_file="tuned-Q4_K_M.gguf", system_prompt=None,
                               num_ctx=4096, alternatives=["tuned-Q8_0.gguf"])


def test_smollm2_stop_tokens_are_exactly_end_of_turn(smollm2_modelfile, smollm2):
    # SmolLM2's EOS is <|im_end|> itself, so the one token that ends an assistant turn is the only stop.
    assert smollm2.eos_token == "<|im_end|>"
    assert smollm2_modelfile.stops == ["<|im_end|>"]
    assert re.findall(r"^PARAMETER stop (.*)$", smollm2_modelfile.text, re.M) == ['"<|im_end|>"']


def test_eos_is_added_when_it_differs_from_end_of_turn(smollm2_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(tmp_path)
    mf = modelfile_for_model(tmp_path, gguf_file="m.gguf", system_prompt=None, num_ctx=2048)
    assert mf.stops == ["<|im_end|>", "<|endoftext|>"]


def test_smollm2_template_renders_like_jinja_in_go(smollm2_modelfile, smollm2, go_render):
    assert smollm2_modelfile.template_converted, smollm2_modelfile.note
    template = template_text(smollm2_modelfile.text)
    for conv in CONVERSATIONS:
        jinja = smollm2.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        assert go_render(template, with_system(conv, smollm2_modelfile.system)) == jinja


def test_smollm2_default_system_becomes_system(smollm2_modelfile, smollm2_tokenizer_dir):
    assert smollm2_modelfile.system == SMOLLM_SYSTEM
    assert f'SYSTEM """{SMOLLM_SYSTEM}"""' in smollm2_modelfile.text
    own = modelfile_for_model(smollm2_tokenizer_dir, gguf_file="m.gguf", system_prompt="Be terse.", num_ctx=2048)
    assert own.system == "Be terse." and 'SYSTEM """Be terse."""' in own.text


def test_modelfile_layout(smollm2_modelfile):
    lines = smollm2_modelfile.text.splitlines()
    assert lines[0] == "FROM ./tuned-Q4_K_M.gguf"
    assert lines[1] == "# or: FROM ./tuned-Q8_0.gguf"
    assert "PARAMETER num_ctx 4096" in lines


def test_prefilled_assistant_turn_is_left_open(smollm2_modelfile, smollm2, go_render):
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, I"}]
    full = smollm2.apply_chat_template(conv, tokenize=False)
    rendered = go_render(template_text(smollm2_modelfile.text), with_system(conv, SMOLLM_SYSTEM))
    assert full.startswith(rendered) and rendered.endswith("Hello, I")


# A Llama-3 style template: BOS written by the template, trimmed contents, <|eot_id|> ends a turn.
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# Llama-2 style: the system prompt is folded into the first user turn.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set sys = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
    "{% set messages = messages[1:] %}{% else %}{% set sys = '' %}{% endif %}"
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + (sys if loop.first else '') "
    "+ m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"
)


def jinja_renderer(source: str, **tokens):
    template = jinja2.Environment().from_string(source)
    return lambda messages, gen: template.render(messages=messages, add_generation_prompt=gen, **tokens)


def test_llama3_style_template(go_render):
    render = jinja_renderer(LLAMA3, bos_token="<|begin_of_text|>")
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>"]
    mf = build_modelfile(gguf_file="m.gguf", render=render, bos_token="<|begin_of_text|>", special_tokens=specials,
                         eos_tokens=["<|end_of_text|>", "<|eot_id|>"], system_prompt=None, num_ctx=8192)
    assert mf.template_converted and mf.system is None and "SYSTEM" not in mf.text
    assert mf.stops == ["<|eot_id|>", "<|end_of_text|>"]
    # Jinja trims contents here and Go cannot: said in the Modelfile, and equal on untrimmed contents.
    assert "trims message contents" in mf.note and "# Note: the chat template trims" in mf.text
    for conv in CONVERSATIONS[:2]:
        want = render(conv, True).removeprefix("<|begin_of_text|>")
        assert go_render(template_text(mf.text), conv) == want
    spaced = CONVERSATIONS[2]
    assert go_render(template_text(mf.text), spaced) != render(spaced, True).removeprefix("<|begin_of_text|>")


def test_unconvertible_template_is_reported():
    render = jinja_renderer(LLAMA2, bos_token="<s>", eos_token="</s>")
    mf = build_modelfile(gguf_file="m.gguf", render=render, bos_token="<s>", special_tokens=["<s>", "</s>"],
                         eos_tokens=["</s>"], system_prompt="Be kind.", num_ctx=2048)
    assert not mf.template_converted
    assert "TEMPLATE" not in mf.text.replace("# No TEMPLATE", "")
    assert "could not be converted" in mf.text and mf.note
    assert mf.stops == ["</s>"]
    assert 'SYSTEM """Be kind."""' in mf.text


def test_no_chat_template():
    mf = build_modelfile(gguf_file="m.gguf", render=None, bos_token=None, special_tokens=[], eos_tokens=["</s>"],
                         system_prompt=None, num_ctx=2048)
    assert not mf.template_converted and mf.note == "the tokenizer has no chat template"


def test_system_prompt_with_triple_quotes_is_rejected():
    with pytest.raises(ValueError, match='contains """'):
        build_modelfile(gguf_file="m.gguf", render=None, bos_token=None, special_tokens=[], eos_tokens=[],
                        system_prompt='say """hi"""', num_ctx=2048)


def test_go_template_quotes_literal_braces(go_render):
    fmt = probe_chat_format(jinja_renderer(
        "{% for m in messages %}{{ '{{' + m['role'] + '}} ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '{{assistant}} ' }}{% endif %}"
    ))
    conv = [{"role": "user", "content": "x"}]
    assert go_render(go_template(fmt), conv) == "{{user}} x\n{{assistant}} "


def test_train_steps_fallback_template(go_render):
    # The plain '### role:' template the train step gives a base model without one: EOS ends a turn.
    from jobs.train.chat import FALLBACK_TEMPLATE

    render = jinja_renderer(FALLBACK_TEMPLATE, eos_token="</s>")
    mf = build_modelfile(gguf_file="m.gguf", render=render, bos_token=None, special_tokens=["<s>", "</s>"],
                         eos_tokens=["</s>"], system_prompt=None, num_ctx=2048)
    assert mf.template_converted and mf.stops == ["</s>"]
    for conv in CONVERSATIONS[:2]:
        assert go_render(template_text(mf.text), conv) == render(conv, True)
