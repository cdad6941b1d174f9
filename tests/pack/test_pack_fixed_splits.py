"""Sources fixed to a split (data.sources[].split): their rows stay there, and a copy of a test or
val row elsewhere is dropped as held_out_copy and listed, so evaluation never sees trained rows."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from tests.pack.packkit import QA, cfg, chat_rows, run_spec, write_jsonl

from jobs.common.spec import DataSource
from jobs.common.stepctx import execute
from jobs.pack.packer import pack
from jobs.pack.records import Record, chat
from jobs.pack.run import run_step

TOPICS = ["rivers", "planets", "poems", "metals", "birds", "storms", "bridges", "islands", "engines", "forests"]


def _rec(rid: str, prompt: str, answer: str = "An answer long enough to be kept as it is.", split=None, **kw) -> Record:
    return Record(rid, f"f:{rid}", chat(prompt, answer), split=split, **kw)


def _train(n: int) -> list[Record]:
    return [_rec(f"t{i}", f"Tell me fact number {i} about {TOPICS[i % 10]}, in {i * 7} words, for reader {i * 13}") for i in range(n)]


def _ids(packed, split: str) -> set[str]:
    return {r["id"] for r in packed.splits[split]}


def test_fixed_rows_stay_in_their_split_and_a_fixed_split_takes_no_other_rows():
    val = [_rec(f"v{i}", f"A validation question on {t} and {i}?", split="val") for i, t in enumerate(TOPICS[:3])]
    packed = pack(_train(40) + val, cfg(split={"train": 0.8, "val": 0.1, "test": 0.1}), [])
    assert _ids(packed, "val") == {"v0", "v1", "v2"}
    assert len(packed.splits["test"]) == 4 and len(packed.splits["train"]) == 36
    split = packed.report["split"]
    assert split["fractions"] == {"train": pytest.approx(0.9), "val": 0.0, "test": 0.1}
    assert split["fixed"] == {"val": 3}
    assert packed.report["counts"] == {"in": 43, "out": 43, "dropped": 0, "train": 36, "val": 3, "test": 4}


def test_a_train_copy_of_a_test_row_is_dropped_and_reported_even_when_it_comes_first():
    train = _train(30) + [_rec("copy", "What is the capital of Germany?", "Berlin, the capital of Germany.")]
    test = [_rec("gold", "what is the capital of germany", "The capital of Germany is Berlin.", split="test")]
    packed = pack(train + test, cfg(), [])
    assert "gold" in _ids(packed, "test") and "copy" not in {r["id"] for s in packed.splits.values() for r in s}
    dropped = packed.report["dropped"]["held_out_copy"]
    assert dropped["ids"] == ["copy"] and dropped["count"] == 1
    assert packed.report["duplicates"]["heldOut"] == [{"kept": "gold", "split": "test", "dropped": "copy", "jaccard": 1.0}]
    assert packed.report["duplicates"]["exact"] == []  # not counted as an ordinary duplicate


def test_a_near_copy_in_train_of_a_val_row_is_dropped_and_a_val_copy_of_a_test_row_too():
    prompt = "Explain in a few sentences how a suspension bridge carries the weight of its deck and traffic"
    rows = _train(30) + [
        _rec("near", prompt + " safely"),
        _rec("val", prompt, split="val"),
        _rec("val2", "Which metal is liquid at room temperature and used in old thermometers?", split="val"),
        _rec("test", "Which metal is liquid at room temperature and used in old thermometers?", split="test"),
    ]
    packed = pack(rows, cfg(nearDupThreshold=0.8), [])
    held = {d["dropped"]: d for d in packed.report["duplicates"]["heldOut"]}
    assert set(held) == {"near", "val2"}
    assert held["near"]["kept"] == "val" and held["near"]["split"] == "val" and 0.8 <= held["near"]["jaccard"] < 1
    assert held["val2"] == {"kept": "test", "split": "test", "dropped": "val2", "jaccard": 1.0}
    assert _ids(packed, "val") == {"val"} and _ids(packed, "test") >= {"test"}


def test_with_dedupe_off_copies_stay_but_not_copies_of_held_out_rows():
    rows = _train(20) + [
        _rec("again", "Tell me fact number 3 about metals, in 21 words, for reader 39"),  # a train copy of t3: kept
        _rec("leak", "Name the longest river in Africa."),
        _rec("gold", "Name the longest river in Africa.", split="test"),
    ]
    packed = pack(rows, cfg(dedupe=False), [])
    assert packed.report["dropped"]["held_out_copy"]["ids"] == ["leak"]
    kept = {r["id"] for s in packed.splits.values() for r in s}
    assert {"again", "t3", "gold"} <= kept and "leak" not in kept


def test_a_fixed_split_emptied_by_filters_is_a_warning():
    rows = _train(20) + [_rec("v0", "A val question with a short answer?", "No.", split="val")]
    packed = pack(rows, cfg(), [])
    assert packed.report["dropped"]["short_output"]["ids"] == ["v0"]
    assert any("val split is empty: every row of the sources fixed to it" in w for w in packed.report["warnings"])


def test_split_must_be_train_val_or_test():
    assert DataSource.model_validate({"path": "v.jsonl", "split": "val"}).split == "val"
    with pytest.raises(ValidationError, match="split"):
        DataSource.model_validate({"path": "v.jsonl", "split": "validation"})


def test_pack_step_writes_a_fixed_validation_file_as_the_val_split(tmp_path, step_env):
    write_jsonl(tmp_path / "train.jsonl", chat_rows())
    val = [(f"{q} Please answer briefly.", a) for q, a in QA[:3]]
    write_jsonl(tmp_path / "val.jsonl", chat_rows(val))
    store = step_env(run_spec([
        {"path": "train.jsonl", "format": "openai_chat"},
        {"path": "val.jsonl", "format": "openai_chat", "split": "val"},
    ], {"nearDupThreshold": None}))
    execute("pack", run_step)
    out = store / "runs/default/packtest/pack"
    val_rows = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in val_rows] == [q for q, _ in val]
    report = json.loads((out / "report.json").read_text())
    assert [s["split"] for s in report["sources"]] == [None, "val"]
    assert report["counts"]["val"] == 3 and report["counts"]["train"] + report["counts"]["test"] == 12
