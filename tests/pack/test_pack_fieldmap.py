"""chatFields: chat files whose keys and role names differ (Axolotl's and LLaMA-Factory's dataset
descriptions) are renamed into the format's names and read by its reader."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from tests.pack.packkit import run_spec, write_jsonl

from jobs.common.errors import InvalidData
from jobs.common.spec import ChatFields, DataSource
from jobs.common.stepctx import execute
from jobs.pack.readers import read_source
from jobs.pack.run import run_step


def _read(rows, fmt: str, **fields):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return read_source("f.jsonl", data, fmt, chat_fields=ChatFields.model_validate(fields))


def test_axolotl_style_names_read_as_openai_chat():
    row = {
        "dialog": [{"speaker": "person", "text": "What is the capital of Germany?"},
                   {"speaker": "bot", "text": "Berlin is the capital of Germany.", "weight": 1}],
        "persona": "You answer in one sentence.",
    }
    (record,) = _read([row], "openai_chat", messages="dialog", role="speaker", content="text", system="persona",
                      roles={"user": ["person"], "assistant": ["bot", "model"]})
    assert record.messages == [
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "What is the capital of Germany?"},
        {"role": "assistant", "content": "Berlin is the capital of Germany.", "weight": 1},
    ]
    assert record.unknown_keys == ()


def test_llama_factory_openai_style_tags_read_as_sharegpt_with_tools():
    call = json.dumps({"name": "weather", "arguments": {"city": "Berlin"}})
    row = {
        "messages": [
            {"role": "user", "content": "Weather in Berlin?"},
            {"role": "function_call", "content": call},
            {"role": "observation", "content": '{"temp": 21}'},
            {"role": "assistant", "content": "It is 21 degrees in Berlin."},
        ],
        "sys": "Use the tools.",
        "functions": json.dumps([{"name": "weather", "parameters": {"type": "object"}}]),
    }
    (record,) = _read([row], "sharegpt", messages="messages", role="role", content="content", system="sys",
                      tools="functions", roles={"user": ["user"], "assistant": ["assistant"], "tool": ["observation"]})
    assert [m["role"] for m in record.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert record.messages[2]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Berlin"}'}
    assert record.messages[3] == {"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 21}'}
    assert record.tools[0]["function"]["name"] == "weather"


def test_a_missing_turn_list_names_the_key_and_the_row():
    with pytest.raises(InvalidData, match=r"f.jsonl:1: no 'dialog' list \(chatFields.messages .*\); the row has: 'messages'"):
        _read([{"messages": []}], "openai_chat", messages="dialog")


def test_a_turn_without_the_mapped_keys_names_its_index():
    rows = [{"dialog": [{"speaker": "person", "text": "Hi?"}, {"who": "bot", "text": "Hello!"}]}]
    with pytest.raises(InvalidData, match=r"f.jsonl:1: dialog\[1\] has no 'speaker' \(chatFields.role .*it has: 'who', 'text'"):
        _read(rows, "openai_chat", messages="dialog", role="speaker", content="text")


def test_a_role_name_left_unmapped_is_refused_by_the_format_checks():
    rows = [{"dialog": [{"speaker": "person", "text": "Hi?"}, {"speaker": "robot", "text": "Hello!"}]}]
    with pytest.raises(InvalidData, match=r"f.jsonl:1: unrecognized_role: messages\[1\] has role 'robot'"):
        _read(rows, "openai_chat", messages="dialog", role="speaker", content="text", roles={"user": ["person"]})


def test_the_spec_checks_chat_fields_against_the_format():
    with pytest.raises(ValidationError, match="chatFields needs format openai_chat or sharegpt"):
        DataSource.model_validate({"path": "f.csv", "format": "csv", "chatFields": {"role": "from"}})
    with pytest.raises(ValidationError, match=r"chatFields.roles: \['function_call'\] are not openai_chat roles"):
        DataSource.model_validate(
            {"path": "f.jsonl", "format": "openai_chat", "chatFields": {"roles": {"function_call": ["fc"]}}}
        )


def test_pack_step_reads_a_source_through_its_chat_fields(tmp_path, step_env):
    rows = [
        {"chat": [{"speaker": "person", "text": f"Question {i}: which river flows through city {i}?"},
                  {"speaker": "bot", "text": f"River {i} flows through city {i}, from north to south."}]}
        for i in range(12)
    ]
    write_jsonl(tmp_path / "chat.jsonl", rows)
    store = step_env(run_spec([{
        "path": "chat.jsonl", "format": "openai_chat",
        "chatFields": {"messages": "chat", "role": "speaker", "content": "text",
                       "roles": {"user": ["person"], "assistant": ["bot"]}},
    }], {"nearDupThreshold": None}))
    execute("pack", run_step)
    out = store / "runs/default/packtest/pack"
    packed = [json.loads(line) for s in ("train", "val", "test") for line in (out / f"{s}.jsonl").read_text().splitlines()]
    assert len(packed) == 12 and all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in packed)
    assert not any("is not read" in w for w in json.loads((out / "report.json").read_text())["warnings"])
