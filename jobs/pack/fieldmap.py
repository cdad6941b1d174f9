"""Chat files whose keys and role names differ from the format's (data.sources[].chatFields):
each row is renamed into the format's own names, then read by that format's reader, so every
check and conversion of the format applies unchanged.

The mapping is that of Axolotl's chat datasets (field_messages, message_property_mappings,
roles: {user: [human, ...]}) and of LLaMA-Factory's dataset_info.json (columns messages, system,
tools; tags role_tag, content_tag, user_tag, ...): key names, and role -> the names used for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs.common.errors import InvalidData

if TYPE_CHECKING:
    from jobs.common.spec import ChatFields

# The format's own names: the turn list, a turn's role and text, and each role's name.
OWN_NAMES: dict[str, dict[str, Any]] = {
    "openai_chat": {
        "messages": "messages", "role": "role", "content": "content",
        "roles": {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool"},
    },
    "sharegpt": {
        "messages": "conversations", "role": "from", "content": "value",
        "roles": {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation",
                  "function_call": "function_call"},
    },
}


def _keys(value: dict[str, Any]) -> str:
    return ", ".join(map(repr, value)) or "nothing"


def remap_row(where: str, row: dict[str, Any], fields: ChatFields, fmt: str) -> dict[str, Any]:
    """`row` with the file's names (fields) replaced by those of `fmt`."""
    own = OWN_NAMES[fmt]
    key = fields.messages or own["messages"]
    turns = row.get(key)
    if not isinstance(turns, list):
        raise InvalidData(
            f"{where}: no {key!r} list (chatFields.messages names the turn list); the row has: {_keys(row)}"
        )
    role_key, content_key = fields.role or own["role"], fields.content or own["content"]
    role_of = {name: own["roles"][role] for role, names in fields.roles.items() for name in names}
    renamed = []
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise InvalidData(f"{where}: {key}[{k}] is a JSON {type(turn).__name__}, not an object")
        missing = [repr(f) for f in (role_key, content_key) if f not in turn]
        if missing:
            raise InvalidData(
                f"{where}: {key}[{k}] has no {' or '.join(missing)} (chatFields.role and chatFields.content "
                f"name a turn's role and text); it has: {_keys(turn)}"
            )
        rest = {name: value for name, value in turn.items() if name not in (role_key, content_key)}
        role = turn[role_key]
        renamed.append({**rest, own["role"]: role_of.get(role, role) if isinstance(role, str) else role,
                        own["content"]: turn[content_key]})
    out = {name: value for name, value in row.items() if name not in (key, fields.system, fields.tools)}
    system = row.get(fields.system) if fields.system else None
    if system and fmt == "openai_chat":
        renamed.insert(0, {"role": "system", "content": system})
    elif system:
        out["system"] = system
    if fields.tools and row.get(fields.tools) is not None:
        out["tools"] = row[fields.tools]
    out[own["messages"]] = renamed
    return out
