"""Conversations to token ids with an assistant-only loss mask.

The mask marks each assistant message's content and its end-of-turn token (what the model must
learn to say, and to stop); system/user turns and the template's role headers are masked.

Two ways to find those tokens:
- the chat template has `{% generation %}` markers, or TRL ships a training version of it that
  has them: the tokenizer returns the mask (`return_assistant_tokens_mask`);
- otherwise (ChatML templates such as SmolLM2's, among others) each assistant message is located
  by rendering the conversation up to it: the text after the rendered prefix with the generation
  prompt, up to and including the end-of-turn marker, is that message. Token offsets turn the
  character span into a token mask.

An assistant message with `weight: 0` (OpenAI's chat format) is never trained on, whichever loss
is chosen: such conversations are masked by rendering prefixes, which locates every message.

Tool use: the row's `tools` go to the template (`apply_chat_template(tools=...)`), assistant tool
calls are trained like any assistant message and tool results are masked like user turns. Tool
call arguments are handed over as objects, the shape HF chat templates expect. A template that
cannot render tool use (it fails on a call, or leaves out a called function, a tool result or an
offered tool) is refused rather than trained on a conversation with its calls missing.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from jobs.common.errors import InvalidInput

log = logging.getLogger(__name__)

Encoded = dict[str, list[int]]  # input_ids and assistant_masks
Tools = list[dict[str, Any]] | None
Encoder = Callable[[list[dict[str, Any]], Tools], Encoded]


class ToolsNotRendered(Exception):
    """The chat template has no (working) support for the row's tool use."""

# For base models that ship no chat template: plain role headers, EOS closing each assistant turn.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ '### ' + message['role'] + ':\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### assistant:\\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer: Any) -> None:
    if not tokenizer.chat_template:
        log.warning("the tokenizer has no chat template; using plain '### role:' headers")
        tokenizer.chat_template = FALLBACK_TEMPLATE


def chat_encoder(tokenizer: Any, assistant_only: bool) -> Encoder:
    encode = _encoder(tokenizer, assistant_only)

    def encoder(messages: list[dict[str, Any]], tools: Tools = None) -> Encoded:
        if tools or any(m.get("tool_calls") or m.get("role") == "tool" for m in messages):
            messages = template_messages(messages)
            check_tools_rendered(tokenizer, messages, tools)
        if any(m.get("weight") == 0 for m in messages):
            return _masked_by_prefixes(tokenizer, messages, tools, only_assistant=assistant_only)
        return encode(messages, tools)

    return encoder


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's tool calls, whose arguments are a JSON string, with the arguments as an object."""
    out = []
    for message in messages:
        if message.get("tool_calls"):
            calls = [{**c, "function": {**c["function"], "arguments": _arguments(c["function"].get("arguments"))}}
                     for c in message["tool_calls"]]
            message = {**message, "tool_calls": calls}
        out.append(message)
    return out


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def check_tools_rendered(tokenizer: Any, messages: list[dict[str, Any]], tools: Tools) -> None:
    """Raise ToolsNotRendered unless the rendered conversation shows every call, result and tool."""
    try:
        text = _render(tokenizer, messages, tools=tools)
    except Exception as err:  # noqa: BLE001 - jinja raises whatever the template trips on
        raise ToolsNotRendered(
            f"the base model's chat template cannot render tool calls ({type(err).__name__}: {err}); "
            "train tool use on a model whose chat template supports tools"
        ) from None
    # A template renders tool use when leaving the calls (or the offered tools) out changes the text.
    without_calls = [{"role": m["role"], "content": m.get("content") or ""} if m.get("tool_calls") else m for m in messages]
    left_out = [
        what for what, same in (
            ("the tool calls", any(m.get("tool_calls") for m in messages)
             and _render(tokenizer, without_calls, tools=tools) == text),
            ("the offered tools", bool(tools) and _render(tokenizer, messages) == text),
        ) if same
    ]
    if left_out:
        raise ToolsNotRendered(
            f"the base model's chat template leaves {' and '.join(left_out)} out of the conversation: "
            "train tool use on a model whose chat template supports tools"
        )


def _encoder(tokenizer: Any, assistant_only: bool) -> Encoder:
    if not assistant_only:
        return lambda messages, tools=None: _all_tokens(tokenizer, messages, tools)
    template = _marked_template(tokenizer)
    if template is not None:
        return lambda messages, tools=None: _masked_by_markers(tokenizer, template, messages, tools)
    return lambda messages, tools=None: _masked_by_prefixes(tokenizer, messages, tools)


def _marked_template(tokenizer: Any) -> str | None:
    """A template with {% generation %} markers that trains the end-of-turn token, if there is one."""
    from trl.chat_template_utils import (
        get_training_chat_template,
        has_generation_markers,
        is_chat_template_stop_token_trained,
    )

    if has_generation_markers(tokenizer.chat_template):
        template = tokenizer.chat_template
    else:
        try:
            template = get_training_chat_template(tokenizer) or tokenizer.chat_template
        except ValueError:  # TRL has no training version of this template
            return None
    return template if is_chat_template_stop_token_trained(tokenizer, chat_template=template) else None


def _render(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool = False, tools: Tools = None) -> str:
    return tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
    )


def _all_tokens(tokenizer: Any, messages: list[dict[str, Any]], tools: Tools = None) -> Encoded:
    ids = tokenizer(_render(tokenizer, messages, tools=tools), add_special_tokens=False)["input_ids"]
    return {"input_ids": ids, "assistant_masks": [1] * len(ids)}


def _masked_by_markers(tokenizer: Any, template: str, messages: list[dict[str, Any]], tools: Tools = None) -> Encoded:
    out = tokenizer.apply_chat_template(
        messages, tools=tools, chat_template=template, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True,
    )
    return {"input_ids": list(out["input_ids"]), "assistant_masks": list(out["assistant_masks"])}


def _masked_by_prefixes(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Tools = None, only_assistant: bool = True
) -> Encoded:
    """Trained: the assistant messages (every token when not `only_assistant`), less those of weight 0."""
    text = _render(tokenizer, messages, tools=tools)
    spans, unweighted = [], []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True, tools=tools)
        through = _render(tokenizer, messages[: i + 1], tools=tools)
        if not (through.startswith(before) and text.startswith(through)):
            raise InvalidInput(
                "steps.train.assistantOnlyLoss: this model's chat template renders earlier turns differently "
                "as the conversation grows, so assistant tokens cannot be located; set assistantOnlyLoss: false"
            )
        # The message runs through its end-of-turn marker; whitespace after the marker belongs to no one.
        (unweighted if message.get("weight") == 0 else spans).append((len(before), len(through.rstrip())))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)

    def within(start: int, end: int, found: list[tuple[int, int]]) -> bool:
        return end > start and any(lo <= start and end <= hi for lo, hi in found)

    mask = [
        int((within(start, end, spans) or not only_assistant) and not within(start, end, unweighted))
        for start, end in encoded["offset_mapping"]
    ]
    return {"input_ids": list(encoded["input_ids"]), "assistant_masks": mask}
