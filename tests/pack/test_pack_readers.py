"""Every input format is read into Records; every kind of bad input is one clear InvalidData."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.pack.packkit import QA, chat_rows, frames_csv, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.common.errors import InvalidData, MissingInput
from jobs.pack.readers import read_file, read_source


def read(path: Path, fmt: str, **kw):
    return read_source(path.name, path.read_bytes(), fmt, **kw)


# --- formats -----------------------------------------------------------------------------------


def test_openai_chat_keeps_the_conversation_and_ids(tmp_path):
    rows = chat_rows()
    rows[0] = {"id": "q-berlin", **rows[0]}
    rows[1]["messages"].insert(0, {"role": "system", "content": "Be brief."})
    records = read(write_jsonl(tmp_path / "chat.jsonl", rows), "openai_chat")
    assert len(records) == len(QA)
    assert records[0].id == "q-berlin"
    assert records[1].id == "chat.jsonl:2"  # no id: file and line
    assert records[1].system == "Be brief."
    assert records[1].prompt == QA[1][0]
    assert records[1].output == QA[1][1]


def test_alpaca_json_array_and_jsonl_read_the_same(tmp_path):
    rows = [{"instruction": q, "input": "", "output": a} for q, a in QA]
    rows[2]["input"] = "Answer in one sentence."
    array = tmp_path / "alpaca.json"
    array.write_text(json.dumps(rows, indent=2))
    lines = write_jsonl(tmp_path / "alpaca.jsonl", rows)
    from_array, from_lines = read(array, "alpaca"), read(lines, "alpaca")
    assert [r.messages for r in from_array] == [r.messages for r in from_lines]
    assert from_array[2].instruction == QA[2][0] and from_array[2].input == "Answer in one sentence."
    assert from_array[2].messages[0]["content"] == f"{QA[2][0]}\n\nAnswer in one sentence."
    assert from_array[0].id == "alpaca.json#1"


def test_sharegpt_maps_roles_and_system(tmp_path):
    rows = [
        {"system": "You are a geographer.",
         "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
        for q, a in QA[:3]
    ]
    records = read(write_jsonl(tmp_path / "sg.jsonl", rows), "sharegpt")
    assert [m["role"] for m in records[0].messages] == ["system", "user", "assistant"]
    assert records[0].output == QA[0][1]


def test_csv_with_column_mapping_reads_text_and_label(tmp_path):
    path = frames_csv(tmp_path / "frames.csv", per_class=3)
    records = read(path, "csv", columns={"text": "chunk_text", "label": "frame_name"})
    assert len(records) == 15
    assert records[0].label == "Conflict" and records[0].label_column == "frame_name"
    assert len(records[0].prompt.split()) == 12
    assert records[0].origin == "frames.csv:2"


def test_csv_recognises_the_users_export_without_a_mapping_and_semicolons(tmp_path):
    path = frames_csv(tmp_path / "frames.csv", per_class=2, delimiter=";")
    records = read(path, "csv")
    assert {r.label for r in records} == {"Conflict", "Moral Value", "Economic", "Powerlessness", "Human Impact"}


def test_csv_quoted_newlines_and_instruction_columns(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text('id,question,answer\nq1,"What is\nthe capital?","Berlin is the capital of Germany."\n')
    (record,) = read(path, "csv")
    assert record.id == "q1" and record.instruction == "What is\nthe capital?"
    assert record.output == "Berlin is the capital of Germany."


def test_generic_json_with_a_mapping(tmp_path):
    rows = [{"frage": q, "antwort": a, "meta": {"x": 1}} for q, a in QA[:4]]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows, ensure_ascii=False))
    records = read(path, "json", columns={"instruction": "frage", "output": "antwort"})
    assert [r.output for r in records] == [a for _, a in QA[:4]]


def test_dpo_rows(tmp_path):
    rows = [{"prompt": q, "chosen": a, "rejected": "I do not know."} for q, a in QA[:3]]
    records = read(write_jsonl(tmp_path / "prefs.jsonl", rows), "dpo")
    assert records[0].rejected == "I do not know." and records[0].output == QA[0][1]


EVAL_ROWS = [
    {"meta": {"model": "m", "checks": []}},
    {"id": "de", "messages": [{"role": "user", "content": "Capital of Germany?"}], "expected": "Berlin",
     "response": "The capital of Germany is Berlin.", "passed": True, "checks": []},
    {"id": "fr", "messages": [{"role": "user", "content": "Capital of France?"}], "expected": "Paris",
     "response": "Lyon, I think.", "passed": False, "checks": []},
    {"id": "x", "messages": [{"role": "user", "content": "Say hi"}], "expected": None,
     "response": "Hi!", "passed": True, "checks": []},
]


def test_eval_results_curate_passed_uses_responses_and_marks_failures(tmp_path):
    path = write_jsonl(tmp_path / "results.jsonl", EVAL_ROWS)
    records = {r.id: r for r in read(path, "eval_results", curate="passed")}
    assert records["de"].output == "The capital of Germany is Berlin." and records["de"].reject is None
    assert records["fr"].reject == "not_passed"


def test_eval_results_curate_expected_uses_expected_answers(tmp_path):
    path = write_jsonl(tmp_path / "results.jsonl", EVAL_ROWS)
    records = {r.id: r for r in read(path, "eval_results", curate="expected")}
    assert records["fr"].output == "Paris" and records["fr"].reject is None
    assert records["x"].reject == "no_expected"


# --- bad input ---------------------------------------------------------------------------------


def test_missing_file_is_missing_input(tmp_path):
    with pytest.raises(MissingInput, match="data/none.jsonl: no such file"):
        read_file(tmp_path / "none.jsonl", "data/none.jsonl")


def test_directory_is_not_a_data_file(tmp_path):
    with pytest.raises(InvalidData, match="is a directory"):
        read_file(tmp_path, "data")


@pytest.mark.parametrize(
    ("name", "content", "fmt", "message"),
    [
        ("bad.jsonl", b'\n{"messages": [}\n', "openai_chat", r"bad.jsonl:2: not valid JSON \(column 15\)"),
        ("latin1.csv", "text,label\nok,a\nStra\xdfe,b\n".encode("latin-1"), "csv",
         r"latin1.csv:3: not UTF-8 \(byte 0xdf at column 5\)"),
        ("utf16.jsonl", "\ufeff{}".encode("utf-16"), "openai_chat", "is UTF-16; save it as UTF-8"),
        ("empty.jsonl", b"", "openai_chat", "empty.jsonl: the file is empty"),
        ("blank.csv", b"\n \n", "csv", "blank.csv: the file is empty"),
        ("header.csv", b"text,label\n", "csv", r"header.csv: no rows"),
        ("meta.jsonl", b'{"meta": {}}\n', "eval_results", r"meta.jsonl: no rows"),
        ("arr.json", b'[{"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}]', "alpaca",
         r"arr.json:2: not valid JSON \(column 22\): Expecting ',' delimiter"),
        ("surrogate.jsonl", b'{"instruction": "\\ud800", "output": "x"}\n', "alpaca", "unpaired surrogate"),
        ("deep.jsonl", b"[" * 100_000 + b"\n", "json", "nested too deeply|not valid JSON"),
        ("noout.jsonl", b'{"instruction": "a"}\n', "alpaca", r"noout.jsonl:1: no field 'output'"),
        ("notobj.json", b'["a", "b"]\n', "sharegpt", r"notobj.json: item 1: expected a JSON object, found str"),
        ("lists.jsonl", b'["a"]\n["b"]\n', "json", r"lists.jsonl:1: expected a JSON object, found list"),
        ("role.jsonl", b'{"conversations": [{"from": "robot", "value": "x"}]}\n', "sharegpt",
         r"role.jsonl:1: conversations\[0\] is from 'robot'"),
        ("chat.jsonl", b'{"messages": [{"role": "user"}]}\n', "openai_chat",
         r"chat.jsonl:1: message_missing_key: messages\[0\] has no content"),
        ("ends.jsonl", b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},'
         b' {"role": "user", "content": "?"}]}\n', "openai_chat", r"ends.jsonl:1: the conversation ends with a 'user'"),
        ("dpo.jsonl", b'{"prompt": "p", "chosen": "c"}\n', "dpo", r"dpo.jsonl:1: no field 'rejected'"),
        ("nested.jsonl", b'{"instruction": {"a": 1}, "output": "x"}\n', "alpaca",
         r"nested.jsonl:1: field 'instruction' is a JSON dict, expected text"),
        ("ragged.csv", b"text,label\na,b\nc,d,e\n", "csv", r"ragged.csv:3: 3 field\(s\), but the header has 2"),
        ("quote.csv", b'text,label\n"unterminated,b\n', "csv", r"quote.csv:\d+: not valid CSV"),
        ("dupe.csv", b"text,text,label\na,b,c\n", "csv", r"dupe.csv:1: the header repeats column\(s\) 'text'"),
        ("passed.jsonl", b'{"id": "a", "messages": [{"role": "user", "content": "q"}], "passed": "yes"}\n',
         "eval_results", r"passed.jsonl:1: 'passed' must be true or false"),
        ("id.jsonl", b'{"id": [1], "instruction": "a", "output": "b"}\n', "alpaca", r"id.jsonl:1: 'id' must be"),
    ],
)
def test_bad_input_names_file_and_line(name, content, fmt, message):
    with pytest.raises(InvalidData, match=message):
        read_source(name, content, fmt)


def test_csv_without_the_mapped_columns_names_them_and_lists_the_header(tmp_path):
    path = frames_csv(tmp_path / "frames.csv", per_class=1)
    with pytest.raises(InvalidData) as err:
        read(path, "csv", columns={"text": "chunk", "label": "frame"})
    assert "'chunk', 'frame'" in err.value.message
    assert "it has: 'chunk_text', 'frame_name'" in err.value.message


def test_csv_with_unknown_columns_and_no_mapping_says_how_to_map(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidData, match=r"the file has: 'a', 'b'\. Name them in data.sources\[\].columns"):
        read(path, "csv")


# --- fuzzing: nothing but our own errors --------------------------------------------------------

FORMATS = ["openai_chat", "alpaca", "sharegpt", "csv", "json", "dpo", "eval_results"]


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                st.sampled_from(["messages", "role", "content", "instruction", "output", "text", "label",
                                 "conversations", "from", "value", "prompt", "chosen", "rejected", "id",
                                 "passed", "response", "expected", "meta"]), inner, max_size=5),
            max_leaves=12,
        ).map(lambda v: (json.dumps(v) + "\n").encode()),
    ),
    fmt=st.sampled_from(FORMATS),
)
def test_readers_raise_only_our_errors(data, fmt):
    try:
        records = read_source("fuzz", data, fmt)
    except (InvalidData, MissingInput):
        return
    for record in records:  # what is accepted has the shape the packer relies on
        assert record.messages and record.messages[-1]["role"] == "assistant"
        assert isinstance(record.prompt, str) and isinstance(record.output, str)
