"""Pack's openai_chat output passes `ftctl validate-data` whatever it read: every input format, with
the awkward rows real files hold (empty turns, weights, tool use, content parts, unread keys),
through the step and the command, training file and --val files alike."""

from __future__ import annotations

import json

import pytest
from tests.pack.packkit import QA, run_spec, write_jsonl
from tests.pack.test_pack_validate_data import ftctl

from jobs.common.stepctx import execute
from jobs.pack.run import run_step

PAIRS = QA + [
    ("What is the tallest mountain on Earth?", "Mount Everest is the tallest mountain above sea level."),
    ("Which ocean is the largest?", "The Pacific is the largest and deepest of the oceans."),
    ("What do bees make from nectar?", "Bees turn nectar into honey and store it in combs."),
]
CALL = {"name": "lookup", "arguments": {"topic": "capitals"}}


def _openai_chat():
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q},
                          {"role": "assistant", "content": a, "weight": 1}], "extra": i} for i, (q, a) in enumerate(PAIRS)]
    rows[0]["messages"][1]["content"] = [{"type": "text", "text": rows[0]["messages"][1]["content"]}]
    rows[1]["messages"][1:1] = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello.", "weight": 0}]
    rows[2]["messages"][2:2] = [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": json.dumps(CALL["arguments"])}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Berlin"},
    ]
    rows[2]["tools"] = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    return rows


def _sharegpt():
    rows = [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]} for q, a in PAIRS]
    rows[0]["conversations"][1:1] = [{"from": "function_call", "value": json.dumps(CALL)},
                                     {"from": "observation", "value": "Berlin"}]
    rows[0]["tools"] = json.dumps([{"name": "lookup", "parameters": {"type": "object"}}])
    rows[1]["system"] = "Be brief."
    rows[2]["conversations"][1:1] = [{"from": "gpt", "value": ""}, {"from": "human", "value": "Well?"}]  # dropped
    return rows


FORMATS = {
    "openai_chat": ("jsonl", _openai_chat),
    "sharegpt": ("jsonl", _sharegpt),
    "alpaca": ("json", lambda: [{"instruction": q, "input": "in brief" if i % 2 else "", "output": a,
                                 "system": "Be brief.", "history": [[f"Hi {i}", f"Hello there, friend number {i}."]]}
                                for i, (q, a) in enumerate(PAIRS)]),
    "dpo": ("jsonl", lambda: [{"prompt": q, "chosen": a, "rejected": "I do not know.", "system": "Be brief."}
                              if i % 2 else {"prompt": [{"role": "user", "content": q}],
                                             "chosen": [{"role": "assistant", "content": a}],
                                             "rejected": [{"role": "assistant", "content": "No idea."}]}
                              for i, (q, a) in enumerate(PAIRS)]),
    "json": ("jsonl", lambda: [{"prompt": q, "completion": a, "source": "quiz"} for q, a in PAIRS]),
    "csv": ("csv", None),
    "eval_results": ("jsonl", lambda: [{"meta": {"model": "m"}}] + [
        {"id": f"e{i}", "messages": [{"role": "user", "content": q}], "expected": a, "response": a,
         "passed": i != 4, "checks": []} for i, (q, a) in enumerate(PAIRS)]),
}


def _write(tmp_path, fmt):
    ext, rows = FORMATS[fmt]
    path = tmp_path / f"data.{ext}"
    if fmt == "csv":
        path.write_text("question;answer;system\n" + "".join(f'"{q}";"{a}";"Be brief."\n' for q, a in PAIRS))
    elif ext == "json":
        path.write_text(json.dumps(rows(), ensure_ascii=False))
    else:
        write_jsonl(path, rows())
    return path


@pytest.mark.parametrize("detect", [False, True], ids=["named", "detected"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_packed_output_passes_validate_data(fmt, detect, tmp_path, step_env, capsys):
    path = _write(tmp_path, fmt)
    source = {"path": path.name} if detect and fmt != "eval_results" else {"path": path.name, "format": fmt}
    store = step_env(run_spec([source], {"nearDupThreshold": None, "split": {"train": 0.8, "val": 0.1, "test": 0.1}}))
    execute("pack", run_step)
    out = store / "runs/default/packtest/pack"
    report = json.loads((out / "report.json").read_text())
    assert report["sources"][0]["format"] == fmt
    counts = report["counts"]
    assert counts["in"] == counts["out"] + sum(d["count"] for d in report["dropped"].values())
    if fmt == "sharegpt":
        assert report["dropped"]["invalid_message"]["count"] == 1  # the empty turn is not written
    capsys.readouterr()
    code = ftctl(str(out / "train.jsonl"), "--val", str(out / "val.jsonl"), "--val", str(out / "test.jsonl"))
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.count("no problems found") == 3
