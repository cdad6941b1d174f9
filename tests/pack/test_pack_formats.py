"""Formats other projects ship are read without loss, and pack's output of each passes validate-data."""

from __future__ import annotations

import json

import pytest
from tests.pack.packkit import QA, cfg

from jobs.common.errors import InvalidData
from jobs.pack.packer import pack
from jobs.pack.readers import read_source
from jobs.pack.validate import validate_chat_jsonl

WEATHER_TOOL = {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object"}}


def read(rows, fmt):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    return read_source("src.jsonl", data, fmt)


def packed(rows, fmt, out="openai_chat"):
    result = pack(read(rows, fmt), cfg(format=out, nearDupThreshold=None), [])
    counts = result.report["counts"]
    dropped = sum(d["count"] for d in result.report["dropped"].values())
    assert counts["in"] == counts["out"] + dropped == len(rows)  # every row is written or dropped by reason
    result.splits["train"] = [row for rows in result.splits.values() for row in rows]  # every split, at once
    return result


def passes_validate_data(rows) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    result = validate_chat_jsonl(data)
    assert result.ok, result.problems[:3]


def alpaca_rows():
    return [
        {"instruction": q, "input": "", "output": a, "system": "Answer briefly.",
         "history": [[f"Hello {i}", f"Hello, how can I help you today, friend {i}?"]]}
        for i, (q, a) in enumerate(QA)
    ]


def test_alpaca_keeps_system_and_history():
    result = packed(alpaca_rows(), "alpaca")
    rows = result.splits["train"]
    passes_validate_data(rows)
    first = next(r for r in rows if r["messages"][-2]["content"] == QA[0][0])
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert first["messages"][0]["content"] == "Answer briefly." and first["messages"][1]["content"] == "Hello 0"
    back = packed(alpaca_rows(), "alpaca", out="alpaca").splits["train"]
    row = next(r for r in back if r["instruction"] == QA[0][0])
    assert row["system"] == "Answer briefly." and row["history"] == [["Hello 0", "Hello, how can I help you today, friend 0?"]]


def sharegpt_tool_rows():
    return [
        {
            "conversations": [
                {"from": "human", "value": f"What is the weather in city number {i}?"},
                {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": f"c{i}"}})},
                {"from": "observation", "value": json.dumps({"temperature": 20 + i})},
                {"from": "gpt", "value": f"It is {20 + i} degrees in city number {i} right now."},
            ],
            "system": "You can call tools.",
            "tools": json.dumps([WEATHER_TOOL]),
        }
        for i in range(12)
    ]


def test_sharegpt_tool_use_becomes_tool_calls_and_tool_messages():
    rows = packed(sharegpt_tool_rows(), "sharegpt").splits["train"]
    passes_validate_data(rows)
    row = rows[0]
    call, result = row["messages"][2], row["messages"][3]
    assert call["role"] == "assistant" and call["content"] is None
    (tool_call,) = call["tool_calls"]
    assert tool_call["function"]["name"] == "get_weather" and json.loads(tool_call["function"]["arguments"])["city"]
    assert result["role"] == "tool" and result["tool_call_id"] == tool_call["id"]
    assert row["tools"] == [{"type": "function", "function": WEATHER_TOOL}]


def test_tool_conversations_are_dropped_by_reason_not_flattened_into_alpaca():
    result = packed(sharegpt_tool_rows()[:11] + alpaca_like_sharegpt(), "sharegpt", out="alpaca")
    assert result.report["dropped"]["tools_need_chat"]["count"] == 11
    assert result.report["counts"]["out"] == 1


def alpaca_like_sharegpt():
    return [{"conversations": [{"from": "human", "value": QA[0][0]}, {"from": "gpt", "value": QA[0][1]}]}]


def test_sharegpt_empty_middle_turn_is_dropped_so_the_output_validates():
    rows = [
        {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": ""},
                           {"from": "human", "value": "and?"}, {"from": "gpt", "value": a}]}
        if i == 0 else {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
        for i, (q, a) in enumerate(QA)
    ]
    result = packed(rows, "sharegpt")
    assert result.report["dropped"]["invalid_message"]["ids"] == ["src.jsonl:1"]
    passes_validate_data(result.splits["train"])


def test_openai_chat_tool_calls_legacy_function_call_and_content_parts():
    rows = []
    for i, (q, a) in enumerate(QA):
        call = {"id": f"c{i}", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        rows.append({
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": q}, {"type": "text", "text": "Be exact."}]},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": f"c{i}", "content": "facts"},
                {"role": "assistant", "content": a},
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
        })
    rows.append({"messages": [{"role": "user", "content": "Weather?"},
                              {"role": "assistant", "content": None, "function_call": {"name": "w", "arguments": "{}"}},
                              {"role": "function", "name": "w", "content": "sunny"},
                              {"role": "assistant", "content": "It is sunny in the city today, enjoy."}]})
    rows.append({"messages": [{"role": "user", "content": [{"type": "text", "text": "What is shown here?"},
                                                           {"type": "image_url", "image_url": {"url": "x.png"}}]},
                              {"role": "assistant", "content": "A cat sitting on a sunny window sill."}]})
    result = packed(rows, "openai_chat")
    out = result.splits["train"]
    passes_validate_data(out)
    assert result.report["dropped"]["image_content"]["ids"] == [f"src.jsonl:{len(rows)}"]
    first = next(r for r in out if r["messages"][-1]["content"] == QA[0][1])
    assert first["messages"][0]["content"] == f"{QA[0][0]}\nBe exact."
    assert first["messages"][1]["tool_calls"][0]["id"] == "c0" and first["tools"][0]["function"]["name"] == "lookup"
    assert any(m.get("function_call") for r in out for m in r["messages"])


def test_preference_single_turn_keeps_system_and_conversational_shapes_are_read():
    single = [{"prompt": q, "chosen": a, "rejected": "No idea.", "system": "Be kind."} for q, a in QA[:4]]
    conversational = [
        {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": a}],
         "rejected": [{"role": "assistant", "content": "No idea."}]}
        for q, a in QA[4:7]
    ]
    implicit = [
        {"chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
         "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": "No idea."}]}
        for q, a in QA[7:9]
    ]
    openai = [
        {"input": {"messages": [{"role": "user", "content": q}]},
         "preferred_output": [{"role": "assistant", "content": a}],
         "non_preferred_output": [{"role": "assistant", "content": "No idea."}]}
        for q, a in QA[9:]
    ]
    result = packed(single + conversational + implicit + openai, "dpo", out="dpo")
    rows = {json.dumps(r["chosen"]): r for r in result.splits["train"]}
    with_system = rows[json.dumps([{"role": "assistant", "content": QA[0][1]}])]
    assert with_system["prompt"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": QA[0][0]}]
    assert with_system["rejected"] == [{"role": "assistant", "content": "No idea."}]
    for q, a in QA[4:]:  # one user turn, no system: plain strings
        assert rows[json.dumps(a)] == {"id": rows[json.dumps(a)]["id"], "prompt": q, "chosen": a, "rejected": "No idea."}


@pytest.mark.parametrize("fmt", ["json", "dpo"])
def test_kto_labelled_completions_are_refused_never_trained_as_sft(fmt):
    rows = [{"prompt": q, "completion": a, "label": i % 2 == 0} for i, (q, a) in enumerate(QA)]
    with pytest.raises(InvalidData, match=r"src.jsonl:1: a KTO row .*label true/false"):
        read(rows, fmt)


def test_trl_prompt_completion_standard_and_conversational():
    standard = [{"prompt": q, "completion": a} for q, a in QA[:6]]
    conversational = [
        {"prompt": [{"role": "system", "content": "Short."}, {"role": "user", "content": q}],
         "completion": [{"role": "assistant", "content": a}]}
        for q, a in QA[6:]
    ]
    rows = packed(standard + conversational, "json").splits["train"]
    passes_validate_data(rows)
    by_answer = {r["messages"][-1]["content"]: r["messages"] for r in rows}
    assert by_answer[QA[0][1]] == [{"role": "user", "content": QA[0][0]}, {"role": "assistant", "content": QA[0][1]}]
    assert by_answer[QA[6][1]][0] == {"role": "system", "content": "Short."}


def test_unknown_top_level_keys_are_listed_as_warnings():
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "images": ["a.png"]}
            for q, a in QA]
    warnings = packed(rows, "openai_chat").report["warnings"]
    assert any("'images' in 12 row(s) (first at src.jsonl:1)" in w for w in warnings)
    assert any("the train split has 10 rows; a useful fine-tune needs 100 or more" in w for w in warnings)


def test_duplicates_with_another_label_are_reported_as_label_conflicts():
    base = "the committee debated the new trade rules for member states at length today"
    lines = ["chunk_text,frame_name"]
    lines += [f"text number {i} about topic {i} and nothing else at all {i}x,{'Economic' if i % 2 else 'Conflict'}"
              for i in range(10)]
    lines += [f"{base},Economic", f"{base},Conflict",  # exact copy, other label
              f"{base} again,Conflict",  # near copy, other label: kept
              f"{base} again,Economic"]  # exact copy of that one, other label
    records = read_source("f.csv", ("\n".join(lines) + "\n").encode(), "csv")
    report = pack(records, cfg(format="classification", nearDupThreshold=0.7), []).report
    assert report["dropped"]["label_conflict"]["ids"] == ["f.csv:13", "f.csv:15"]
    conflicts = report["duplicates"]["labelConflicts"]
    assert conflicts["exact"] == [
        {"kept": "f.csv:12", "label": "Economic", "other": "f.csv:13", "otherLabel": "Conflict"},
        {"kept": "f.csv:14", "label": "Conflict", "other": "f.csv:15", "otherLabel": "Economic"},
    ]
    assert [(c["kept"], c["other"]) for c in conflicts["near"]] == [("f.csv:12", "f.csv:14")]
    assert report["dropped"]["near_duplicate"]["count"] == 0
    assert report["counts"]["out"] == 12


def test_a_generative_mapping_onto_a_label_column_is_stratified_and_keeps_short_class_names(tmp_path):
    from tests.pack.packkit import FRAMES, frames_csv

    path = frames_csv(tmp_path / "frames.csv", per_class=10)
    records = read_source(path.name, path.read_bytes(), "csv", columns={"instruction": "chunk_text", "output": "frame_name"})
    report = pack(records, cfg(format="openai_chat"), []).report
    assert report["counts"]["out"] == len(FRAMES) * 10  # "Economic" is under minOutputTokens, but a class name
    assert report["split"]["stratified"] is True
    assert all(report["labels"][split][frame] > 0 for split in ("train", "val", "test") for frame in FRAMES)
