"""Format detection for sources without a format: each shape, ambiguous files, and report.json."""

from __future__ import annotations

import json

import pytest
from tests.pack.packkit import chat_rows, frames_csv, run_spec, write_jsonl

from jobs.common.errors import InvalidData
from jobs.common.stepctx import execute
from jobs.pack.detect import detect_format
from jobs.pack.readers import read_source
from jobs.pack.run import run_step

USER = {"role": "user", "content": "What is the capital of Germany?"}
ANSWER = {"role": "assistant", "content": "The capital of Germany is Berlin."}
WRONG = {"role": "assistant", "content": "The capital of Germany is Munich."}

ROWS = {
    "openai_chat": [{"messages": [USER, ANSWER]}],
    "sharegpt": [{"conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello there!"}]}],
    "dpo": [
        {"prompt": "Capital of Germany?", "chosen": "Berlin is the capital.", "rejected": "Munich."},
        {"prompt": [USER], "chosen": [ANSWER], "rejected": [WRONG]},
        {"input": {"messages": [USER]}, "preferred_output": [ANSWER], "non_preferred_output": [WRONG]},
    ],
    "alpaca": [{"instruction": "Name the capital of Germany.", "input": "", "output": "Berlin.", "history": []}],
    "eval_results": [
        {"meta": {"model": "m"}},
        {"id": "q1", "messages": [USER], "expected": "Berlin", "response": "Berlin", "passed": True, "checks": []},
    ],
    "json": [
        {"prompt": "Capital of Germany?", "completion": "Berlin is the capital."},
        {"prompt": [USER], "completion": [ANSWER]},
    ],
}


@pytest.mark.parametrize("row", [
    {"question": "Capital of Germany?", "answer": "Berlin is the capital."},
    {"text": "Parliament debates the new trade law", "label": "Economic"},
])
def test_mapped_columns_are_json(row):
    assert detect_format("f.jsonl", _jsonl([row])) == "json"


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_each_shape_is_detected_and_read_by_its_reader(fmt):
    data = _jsonl(ROWS[fmt])
    assert detect_format("f.jsonl", data) == fmt
    assert len(read_source("f.jsonl", data, fmt)) == len([r for r in ROWS[fmt] if "meta" not in r])


def test_a_json_array_document_and_csv_are_detected(tmp_path):
    assert detect_format("a.json", json.dumps(ROWS["sharegpt"] * 3, indent=2).encode()) == "sharegpt"
    path = frames_csv(tmp_path / "frames.csv", per_class=2)
    assert detect_format(path.name, path.read_bytes()) == "csv"


def test_a_row_of_two_shapes_is_refused_with_the_candidates():
    row = {"messages": [USER, ANSWER], "conversations": ROWS["sharegpt"][0]["conversations"]}
    with pytest.raises(InvalidData, match=r"f.jsonl: the format is ambiguous, f.jsonl:2 matches several formats: "
                                          r"openai_chat: .*\(at f.jsonl:2\); sharegpt: .*\(at f.jsonl:2\)"):
        detect_format("f.jsonl", _jsonl([ROWS["openai_chat"][0], row]))


def test_rows_of_different_formats_are_refused_naming_where_each_starts():
    data = _jsonl(ROWS["openai_chat"] * 2 + ROWS["alpaca"])
    with pytest.raises(InvalidData, match=r"its rows match different formats: alpaca: .*\(at f.jsonl:3\); "
                                          r"openai_chat: .*\(at f.jsonl:1\)"):
        detect_format("f.jsonl", data)


def test_a_row_of_no_known_shape_names_its_keys_and_the_formats():
    with pytest.raises(InvalidData, match=r"f.jsonl:1: cannot tell the format \(keys: 'foo', 'bar'\); set "
                                          r"data.sources\[\].format, one of: openai_chat"):
        detect_format("f.jsonl", _jsonl([{"foo": 1, "bar": 2}]))


def test_a_kto_file_is_detected_as_json_and_then_refused_by_the_reader():
    data = _jsonl([{"prompt": "Capital of Germany?", "completion": "Munich.", "label": False}])
    assert detect_format("k.jsonl", data) == "json"
    with pytest.raises(InvalidData, match="KTO row"):
        read_source("k.jsonl", data, "json")


def test_pack_step_names_the_detected_format_in_report_json(tmp_path, step_env):
    write_jsonl(tmp_path / "chat.jsonl", chat_rows())
    write_jsonl(tmp_path / "share.jsonl", [
        {"conversations": [{"from": "human", "value": f"Question {i} about rivers and lakes?"},
                           {"from": "gpt", "value": f"Answer {i}: rivers flow into lakes and seas."}]}
        for i in range(4)
    ])
    store = step_env(run_spec([{"path": "chat.jsonl"}, {"path": "share.jsonl", "format": "sharegpt"}]))
    execute("pack", run_step)
    report = json.loads((store / "runs/default/packtest/pack/report.json").read_text())
    assert [(s["format"], s["detected"]) for s in report["sources"]] == [("openai_chat", True), ("sharegpt", False)]


def test_pack_step_refuses_an_ambiguous_file_naming_the_source(tmp_path, step_env):
    write_jsonl(tmp_path / "mixed.jsonl", ROWS["openai_chat"] + ROWS["sharegpt"])
    step_env(run_spec([{"path": "mixed.jsonl"}]))
    with pytest.raises(InvalidData, match=r"data.sources\[0\]: mixed.jsonl: the format is ambiguous"):
        execute("pack", run_step)
