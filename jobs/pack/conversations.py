"""Conversation shapes other projects ship, turned into OpenAI chat messages without loss.

- OpenAI content parts: text parts are joined; an image part makes the row unusable for text
  fine-tuning, which the reader reports as the drop reason `image_content`.
- ShareGPT tool use (LLaMA-Factory): `function_call` turns hold {"name", "arguments"} JSON and
  become assistant `tool_calls`; `observation` turns become `tool` messages answering them;
  the row's `tools` (a JSON list of function schemas) becomes OpenAI `tools`.
"""

from __future__ import annotations

import json
from typing import Any

from jobs.common.errors import InvalidData

IMAGE_PARTS = frozenset({"image_url", "image", "input_image"})


def content_text(where: str, content: Any) -> tuple[Any, bool]:
    """(content with text parts joined, whether an image part was found)."""
    if not isinstance(content, list):
        return content, False
    texts, image = [], False
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in IMAGE_PARTS:
            image = True
        elif kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise InvalidData(f"{where}: content[{k}] is not a text or image part ({json.dumps(part)[:60]})")
    return "\n".join(texts), image


def _json(where: str, field: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise InvalidData(f"{where}: {field} is not valid JSON") from None


def sharegpt_tools(where: str, value: Any) -> list[dict[str, Any]] | None:
    if value in (None, "", []):
        return None
    tools = _json(where, "tools", value)
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise InvalidData(f"{where}: tools must be a JSON list of function schemas")
    return [t if t.get("type") == "function" and "function" in t else {"type": "function", "function": t} for t in tools]


def tool_call_message(where: str, value: Any, first_id: int) -> dict[str, Any]:
    """An assistant message calling the function(s) of a `function_call` turn."""
    calls = _json(where, "function_call", value)
    calls = calls if isinstance(calls, list) else [calls]
    out = []
    for k, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise InvalidData(f"{where}: a function_call needs a 'name' and 'arguments'")
        arguments = call.get("arguments", {})
        arguments = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        out.append(
            {"id": f"call_{first_id + k}", "type": "function", "function": {"name": call["name"], "arguments": arguments}}
        )
    return {"role": "assistant", "content": None, "tool_calls": out}


def pending_call_id(messages: list[dict[str, Any]]) -> str | None:
    """The id of the earliest tool call of the last assistant turn that no tool message answers yet."""
    answered = set()
    for message in reversed(messages):
        if message.get("role") == "tool":
            answered.add(message.get("tool_call_id"))
        elif message.get("tool_calls"):
            return next((c["id"] for c in message["tool_calls"] if c["id"] not in answered), None)
        else:
            return None
    return None


def uses_tools(messages: list[dict[str, Any]]) -> bool:
    return any(m.get("tool_calls") or m.get("function_call") or m.get("role") in ("tool", "function") for m in messages)
