"""pack(): filters, dedupe, every output format, the single-class error and report.json's contents."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from tests.pack.packkit import FRAMES, QA, cfg, chat_rows, frames_csv, write_jsonl

from jobs.common.errors import InvalidData
from jobs.pack.packer import pack
from jobs.pack.readers import read_source
from jobs.pack.records import Record, chat
from jobs.pack.validate import validate_chat_jsonl


def records_of(path, fmt, **kw) -> list[Record]:
    return read_source(path.name, path.read_bytes(), fmt, **kw)


def all_rows(packed):
    return packed.splits["train"] + packed.splits["val"] + packed.splits["test"]


# --- output formats ----------------------------------------------------------------------------


def test_openai_chat_output_is_valid_fine_tuning_data(tmp_path):
    records = records_of(write_jsonl(tmp_path / "a.jsonl", chat_rows()), "openai_chat")
    packed = pack(records, cfg(systemPrompt="You answer quiz questions."), [])
    rows = all_rows(packed)
    assert len(rows) == len(QA)
    assert all(r["messages"][0] == {"role": "system", "content": "You answer quiz questions."} for r in rows)
    data = "".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows).encode()
    assert validate_chat_jsonl(data).ok


def test_alpaca_output_round_trips_alpaca_input(tmp_path):
    source = [{"instruction": q, "input": "ctx" if i % 2 else "", "output": a} for i, (q, a) in enumerate(QA)]
    records = records_of(write_jsonl(tmp_path / "a.jsonl", source), "alpaca")
    rows = all_rows(pack(records, cfg(format="alpaca"), []))
    assert sorted((r["instruction"], r["input"], r["output"]) for r in rows) == sorted(
        (s["instruction"], s["input"], s["output"]) for s in source
    )
    assert all(set(r) == {"id", "instruction", "input", "output"} for r in rows)


def test_alpaca_output_from_a_multi_turn_chat():
    messages = [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "I am planning a trip to Germany."},
        {"role": "assistant", "content": "Nice, where to?"},
        {"role": "user", "content": "What is the capital?"},
        {"role": "assistant", "content": "The capital of Germany is Berlin."},
    ]
    packed = pack([Record("t", "x:1", messages)], cfg(format="alpaca", split={"train": 0.8, "val": 0.2, "test": 0}), [])
    (row,) = all_rows(packed)
    assert row == {
        "id": "t",
        "instruction": "What is the capital?",
        "input": "user: I am planning a trip to Germany.\nassistant: Nice, where to?",
        "output": "The capital of Germany is Berlin.",
        "system": "Be helpful.",
    }


def test_classification_output_from_the_users_csv(tmp_path):
    records = records_of(frames_csv(tmp_path / "frames.csv", per_class=20), "csv")
    packed = pack(records, cfg(format="classification"), [])
    rows = all_rows(packed)
    assert len(rows) == 100 and all(set(r) == {"id", "text", "label"} for r in rows)
    assert packed.report["labels"]["all"] == {frame: 20 for frame in FRAMES}
    assert packed.report["labels"]["test"] == {frame: 2 for frame in FRAMES}
    assert packed.report["split"]["stratified"] is True


def test_dpo_output_and_dpo_needs_preference_rows(tmp_path):
    prefs = [{"prompt": q, "chosen": a, "rejected": "No idea, sorry about that."} for q, a in QA]
    rows = all_rows(pack(records_of(write_jsonl(tmp_path / "p.jsonl", prefs), "dpo"), cfg(format="dpo"), []))
    assert {r["prompt"] for r in rows} == {q for q, _ in QA}
    assert all(r["rejected"] == "No idea, sorry about that." and r["chosen"] for r in rows)
    chats = records_of(write_jsonl(tmp_path / "c.jsonl", chat_rows()), "openai_chat")
    with pytest.raises(InvalidData, match=r"c.jsonl:1: steps.pack.format dpo needs preference rows"):
        pack(chats, cfg(format="dpo"), [])


def test_every_row_has_a_unique_id_and_duplicate_ids_are_an_error(tmp_path):
    records = records_of(write_jsonl(tmp_path / "a.jsonl", chat_rows()), "openai_chat")
    ids = [r["id"] for r in all_rows(pack(records, cfg(), []))]
    assert len(set(ids)) == len(ids) == len(QA)
    twice = records + records_of(write_jsonl(tmp_path / "a.jsonl", chat_rows()), "openai_chat")
    with pytest.raises(InvalidData, match=r"id 'a.jsonl:1' is already used at a.jsonl:1"):
        pack(twice, cfg(), [])


# --- filters and the report --------------------------------------------------------------------


def _rec(i: int, prompt: str, answer: str, **kw) -> Record:
    return Record(f"r{i}", f"f:{i}", chat(prompt, answer), **kw)


def test_report_counts_dropped_ids_and_duplicate_clusters():
    long = "word " * 100
    records = [_rec(i, q, a) for i, (q, a) in enumerate(QA)] + [
        _rec(100, "What is the capital of GERMANY", "Berlin is the capital, on the river Spree."),  # exact dup of r0
        _rec(101, "Which planet is the very largest in the solar system?", "Jupiter, by far the largest one."),
        _rec(102, "A question with a short answer?", "Yes."),
        _rec(103, "   ", "An answer without any question at all."),
        _rec(104, "Tell me something.", ""),
        _rec(105, f"Please summarise: {long}", "A long text about words."),
        _rec(106, "Eval item that failed", "A wrong answer from the model.", reject="not_passed"),
    ]
    packed = pack(records, cfg(maxTokens=80, nearDupThreshold=0.75), [{"index": 0}])
    report = packed.report
    assert report["counts"] == {"in": 19, "out": 12, "dropped": 7, "train": 10, "val": 1, "test": 1}
    assert {k: v["ids"] for k, v in report["dropped"].items()} == {
        "duplicate": ["r100"],
        "near_duplicate": ["r101"],
        "short_output": ["r102"],
        "empty_prompt": ["r103"],
        "empty_output": ["r104"],
        "too_long": ["r105"],
        "not_passed": ["r106"],
    }
    assert report["duplicates"]["exact"] == [{"kept": "r0", "dropped": ["r100"]}]
    (cluster,) = report["duplicates"]["near"]
    assert cluster["kept"] == "r2" and cluster["dropped"][0]["id"] == "r101"
    assert 0.75 <= cluster["dropped"][0]["jaccard"] < 1
    stats = report["duplicates"]["nearDup"]
    assert stats["rows"] == 13 and stats["candidatePairs"] >= 1 and stats["threshold"] == 0.75
    assert report["filters"] == {
        "minOutputTokens": 3, "maxTokens": 80, "dedupe": True, "nearDupThreshold": 0.75, "curate": "passed",
    }
    assert report["labels"] is None and report["sources"] == [{"index": 0}]
    kept_ids = {r["id"] for r in all_rows(packed)}
    assert kept_ids.isdisjoint({"r100", "r101", "r102", "r103", "r104", "r105", "r106"})


def test_min_output_tokens_is_configurable_and_spares_labels():
    records = [_rec(i, f"Question number {i}?", "Short.") for i in range(5)]
    records += [_rec(10 + i, f"Text {i} about money", "Economic", label="Economic") for i in range(3)]
    packed = pack(records, cfg(minOutputTokens=3), [])
    assert packed.report["dropped"]["short_output"]["ids"] == ["r0", "r1", "r2", "r3", "r4"]
    assert pack(records, cfg(minOutputTokens=0), []).report["counts"]["out"] == 8


def test_min_output_counts_tokens_so_complete_cjk_answers_survive_the_default():
    """Ten Chinese characters are a whole answer; by characters they were under the old 20."""
    records = [
        _rec(0, "列出三种黄色的东西。", "太阳，柠檬，向日葵。"),
        _rec(1, "ગુજરાતની રાજધાની કઈ છે?", "ગાંધીનગર."),
        _rec(2, "Is water wet?", "Yes."),
        _rec(3, "Name a yellow fruit.", "A lemon is yellow."),
    ]
    packed = pack(records, cfg(), [])
    assert packed.report["dropped"]["short_output"]["ids"] == ["r2"]
    assert packed.report["counts"]["out"] == 3


def test_dedupe_off_and_near_dup_off():
    records = [_rec(0, "Same question here?", "An answer long enough to be kept."),
               _rec(1, "same question here", "Another answer long enough to be kept."),
               _rec(2, "Same question here, please?", "A third answer long enough to be kept.")]
    assert pack(records, cfg(dedupe=False), []).report["counts"]["out"] == 3
    only_exact = pack(records, cfg(nearDupThreshold=None), []).report
    assert only_exact["counts"]["out"] == 2 and only_exact["duplicates"]["nearDup"] is None
    assert pack(records, cfg(nearDupThreshold=0.7), []).report["counts"]["out"] == 1


def test_duplicates_never_straddle_train_and_test_even_without_dedupe():
    records = [
        _rec(i, f"Question {i % 20} about the topic?", f"Answer variant {i} that is long enough.") for i in range(200)
    ]
    packed = pack(records, cfg(dedupe=False), [])
    prompts = {s: {r["messages"][0]["content"] for r in packed.splits[s]} for s in ("train", "val", "test")}
    assert prompts["test"] and prompts["train"].isdisjoint(prompts["test"])
    assert prompts["train"].isdisjoint(prompts["val"])


def test_all_rows_filtered_out_says_why():
    records = [_rec(i, f"Question {i}?", "No.") for i in range(4)]
    with pytest.raises(InvalidData, match=r"all 4 rows were filtered out.*short_output: 4.*minOutputTokens=3"):
        pack(records, cfg(), [])


def test_single_class_label_column_is_an_error(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("chunk_text,frame_name\n" + "".join(f"text number {i},Conflict\n" for i in range(30)))
    records = records_of(path, "csv")
    with pytest.raises(InvalidData, match=r"one class, 'Conflict' \(30 rows, e.g. one.csv:2, column 'frame_name'\)"):
        pack(records, cfg(format="classification"), [])


def test_threshold_zero_is_refused_by_the_spec():
    with pytest.raises(ValidationError, match="nearDupThreshold"):
        cfg(nearDupThreshold=0)


def test_eval_results_curated_into_training_rows(tmp_path):
    rows = [{"meta": {}}] + [
        {"id": f"e{i}", "messages": [{"role": "user", "content": q}], "expected": a.split()[0],
         "response": a, "passed": i % 3 != 0, "checks": []}
        for i, (q, a) in enumerate(QA)
    ]
    path = write_jsonl(tmp_path / "results.jsonl", rows)
    passed = pack(records_of(path, "eval_results", curate="passed"), cfg(), [])
    assert passed.report["dropped"]["not_passed"]["ids"] == ["e0", "e3", "e6", "e9"]
    assert {r["messages"][-1]["content"] for r in all_rows(passed)} == {a for i, (_, a) in enumerate(QA) if i % 3}
    expected = pack(records_of(path, "eval_results", curate="expected"), cfg(minOutputTokens=0), [])
    assert expected.report["counts"]["out"] == len(QA)
    assert {r["messages"][-1]["content"] for r in all_rows(expected)} == {a.split()[0] for _, a in QA}


def test_too_long_counts_estimated_tokens_not_characters():
    wordy = _rec(0, "Spell it out: " + "abcdef" * 60, "A long enough answer to keep.")  # 374 characters, ~70 tokens
    assert pack([wordy], cfg(maxTokens=90), []).report["counts"]["out"] == 1
    with pytest.raises(InvalidData, match="too_long: 1"):
        pack([wordy], cfg(maxTokens=60), [])
