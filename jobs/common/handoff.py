"""What one step hands the next, read in one place so that no step imports another: eval's
results, a packed row as the conversation every step renders it, pack's report and label set,
and the train step's trained weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.common.errors import InvalidData, MissingInput

if TYPE_CHECKING:
    from jobs.common.stepctx import RunReader


def _is_message(m: Any) -> bool:
    """{role, content} with text content; an assistant's tool calls may stand in for the text, and a
    tool result names the call it answers."""
    if not (isinstance(m, dict) and isinstance(m.get("role"), str)):
        return False
    calls = m.get("tool_calls")
    if calls is not None and not (isinstance(calls, list) and all(isinstance(c, dict) and "function" in c for c in calls)):
        return False
    if m["role"] == "tool" and not isinstance(m.get("tool_call_id"), str):
        return False
    return isinstance(m.get("content"), str) or (m.get("content") is None and bool(calls))


def chat_messages(row: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The conversation of an openai_chat or alpaca row (openai_chat: tool calls and results too)."""
    if "messages" in row:
        messages = row["messages"]
        if not (isinstance(messages, list) and all(map(_is_message, messages))):
            raise InvalidData(
                f"{where}: messages must be a list of {{role, content}} objects with string content "
                "(or an assistant's tool_calls, or a tool result with its tool_call_id)"
            )
    elif isinstance(row.get("instruction"), str) and isinstance(row.get("output"), str):
        prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]
    else:
        raise InvalidData(f"{where}: expected messages (openai_chat) or instruction/output (alpaca)")
    if not any(m["role"] == "assistant" for m in messages):
        raise InvalidData(f"{where}: no assistant message to learn from")
    return messages


def chat_tools(row: dict[str, Any], where: str) -> list[dict[str, Any]] | None:
    """The functions an openai_chat row's conversation may call (OpenAI's `tools`), or None."""
    tools = row.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise InvalidData(f"{where}: tools must be a list of tool objects")
    return tools or None


def train_output(ctx: RunReader) -> tuple[str, Path]:
    """("adapter" | "model", local folder) named by the train step's manifest outputs; only that
    folder is fetched, not the checkpoints beside it."""
    outputs = ctx.input_manifest("train").get("outputs", {})
    kind = next((k for k in ("adapter", "model") if k in outputs), None)
    if kind is None:
        raise MissingInput(
            f"the train step's output has no adapter and no model (outputs: {sorted(outputs)}): "
            "re-run the train step"
        )
    folder = outputs[kind].rstrip("/")
    path = ctx.input_dir("train", only=folder) / folder
    if not path.is_dir():
        raise MissingInput(f"the train step's {kind} folder {outputs[kind]!r} is missing from its output")
    return kind, path


# The eval step's answers, which pack curates into training data (data.sources[].fromStep: eval).
EVAL_RESULTS = "results.jsonl"


def eval_results(ctx: RunReader) -> Path:
    """The local, verified copy of the eval step's results.jsonl."""
    return ctx.input_dir("eval", only=EVAL_RESULTS) / EVAL_RESULTS


def pack_report(ctx: RunReader) -> dict[str, Any] | None:
    """Pack's report.json (counts, drops, labels), or None when its output names none."""
    report = ctx.input_manifest("pack").get("outputs", {}).get("report")
    if report is None:
        return None
    path = ctx.input_dir("pack", only=report) / report
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InvalidData(f"the pack step's {report} is not readable JSON: {err}") from None


def pack_labels(ctx: RunReader) -> list[str] | None:
    """The label set pack reported when every packed answer is a label (a classification run, or a
    generative mapping onto a label column), else None."""
    labels = (pack_report(ctx) or {}).get("labels")
    return sorted(labels["all"]) if labels else None
