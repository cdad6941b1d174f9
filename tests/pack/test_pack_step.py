"""The pack step end to end through the harness, against a FileStore: outputs, manifest, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.pack.packkit import QA, chat_rows, frames_csv, run_spec, write_jsonl

from jobs.common import artifacts
from jobs.common.errors import InvalidData, InvalidInput, MissingInput
from jobs.common.stepctx import execute
from jobs.common.store import FileStore
from jobs.pack.run import run_step
from jobs.pack.validate import validate_chat_jsonl

REPO = Path(__file__).resolve().parents[2]
PACK = Path("runs/default/packtest/pack")


def manifest(store: Path) -> dict | None:
    path = store / PACK / "_manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def output(store: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (store / PACK / name).read_text().splitlines()]


def test_pack_end_to_end_openai_chat(tmp_path, step_env):
    write_jsonl(tmp_path / "chat.jsonl", chat_rows())
    (tmp_path / "qa.csv").write_text(
        "question,answer\n" + "".join(f'"{q} (again, in other words)","{a} Said differently."\n' for q, a in QA[:4])
    )
    store = step_env(run_spec(
        [{"path": "chat.jsonl", "format": "openai_chat"}, {"path": "qa.csv", "format": "csv"}],
        {"split": {"train": 0.75, "val": 0.125, "test": 0.125}, "seed": 3},
    ))
    result = execute("pack", run_step)
    committed = manifest(store)
    assert committed is not None and committed["inputKey"] == result["inputKey"]
    assert committed["outputs"] == {
        "train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl", "report": "report.json",
    }
    assert {f["path"] for f in committed["files"]} == {"train.jsonl", "val.jsonl", "test.jsonl", "report.json"}
    assert committed["metrics"] == {"rowsIn": 16, "rowsOut": 16, "dropped": 0, "train": 12, "val": 2, "test": 2}
    fetched = artifacts.fetch(FileStore(store), committed, tmp_path / "fetched")  # checksums verify
    rows = [json.loads(line) for s in ("train", "val", "test") for line in (fetched / f"{s}.jsonl").open()]
    assert len({r["id"] for r in rows}) == 16
    body = "".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows).encode()
    assert validate_chat_jsonl(body).ok
    report = json.loads((fetched / "report.json").read_text())
    assert report["sources"] == [
        {"index": 0, "location": "chat.jsonl", "format": "openai_chat", "detected": False, "rows": 12, "split": None},
        {"index": 1, "location": "qa.csv", "format": "csv", "detected": False, "rows": 4, "split": None},
    ]


def test_pack_end_to_end_classification_from_the_users_csv(tmp_path, step_env):
    frames_csv(tmp_path / "frames.csv", per_class=10)
    store = step_env(run_spec(
        [{"path": "frames.csv", "format": "csv", "columns": {"text": "chunk_text", "label": "frame_name"}}],
        {"format": "classification"},
    ))
    execute("pack", run_step)
    test_rows = output(store, "test.jsonl")
    assert {r["label"] for r in test_rows} == {"Conflict", "Moral Value", "Economic", "Powerlessness", "Human Impact"}
    train_ids = {r["id"] for r in output(store, "train.jsonl")}
    assert train_ids.isdisjoint(r["id"] for r in test_rows)
    report = json.loads((store / PACK / "report.json").read_text())
    assert report["labels"]["train"] == {label: 8 for label in report["labels"]["all"]}


def test_pack_reads_the_eval_steps_results(tmp_path, step_env):
    results = [{"meta": {"backend": "fake"}}] + [
        {"id": f"item-{i}", "messages": [{"role": "user", "content": q}], "expected": a, "response": a,
         "passed": i % 2 == 0, "checks": []}
        for i, (q, a) in enumerate(QA)
    ]
    store = step_env(run_spec(
        [{"fromStep": "eval", "format": "eval_results"}],
        {"curate": "passed"},
        {"eval": {"items": "items.jsonl", "backend": {"asgi": "app:app"}}},
    ))
    writer = artifacts.StepWriter(FileStore(store), "default", "packtest", "eval")
    writer.begin()
    writer.add_file("results.jsonl", write_jsonl(tmp_path / "results.jsonl", results))
    writer.commit(input_key="k", code_version="v")
    execute("pack", run_step)
    report = json.loads((store / PACK / "report.json").read_text())
    assert report["dropped"]["not_passed"]["ids"] == [f"item-{i}" for i in range(1, 12, 2)]
    assert report["counts"]["out"] == 6


BAD_INPUTS = [
    ("malformed.jsonl", b'{"messages": [{"role": "user", "content": "a"}]\n', "openai_chat", {},
     InvalidData, r"data.sources\[0\]: malformed.jsonl:1: not valid JSON"),
    ("absent.jsonl", None, "openai_chat", {}, MissingInput, r"data.sources\[0\]: absent.jsonl: no such file"),
    ("latin1.csv", "question,answer\nStraße?,Eine lange Antwort auf die Frage.\n".encode("latin-1"), "csv", {},
     InvalidData, r"data.sources\[0\]: latin1.csv:2: not UTF-8"),
    ("empty.jsonl", b"", "alpaca", {}, InvalidData, r"data.sources\[0\]: empty.jsonl: the file is empty"),
    ("frames.csv", b"chunk_text,frame_name\nsome text,Conflict\n", "csv",
     {"columns": {"text": "text", "label": "frame"}}, InvalidData,
     r"column\(s\) 'text', 'frame' from the columns mapping are not in the file; it has: 'chunk_text', 'frame_name'"),
    ("one.csv", b"chunk_text,frame_name\n" + b"".join(b"text %d here,Conflict\n" % i for i in range(20)), "csv", {},
     InvalidData, r"one class, 'Conflict'"),
    ("short.jsonl", b"".join(b'{"instruction": "Question %d?", "output": "No."}\n' % i for i in range(5)), "alpaca", {},
     InvalidData, r"all 5 rows were filtered out"),
]


@pytest.mark.parametrize(
    ("name", "content", "fmt", "extra", "error", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_commits_nothing(tmp_path, step_env, name, content, fmt, extra, error, message):
    write_jsonl(tmp_path / "good.jsonl", chat_rows())
    good = {"path": "good.jsonl", "format": "openai_chat"}
    step_env(run_spec([good]))
    execute("pack", run_step)  # a committed output from before ...
    if content is not None:
        (tmp_path / name).write_bytes(content)
    pack_cfg = {"format": "classification"} if name == "one.csv" else {}
    store = step_env(run_spec([{"path": name, "format": fmt, **extra}], pack_cfg))
    with pytest.raises(error, match=message):
        execute("pack", run_step)
    assert manifest(store) is None  # ... is un-committed, and nothing new is committed


def test_bad_input_through_python_m_exits_2_without_a_traceback(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"messages": [}\n')
    spec = tmp_path / "run.json"
    spec.write_text(json.dumps(run_spec([{"path": "bad.jsonl", "format": "openai_chat"}])))
    store = tmp_path / "store"
    env = {**os.environ, "FT_SPEC_FILE": str(spec), "FT_STORE_URI": store.as_uri(), "FT_BASE_DIR": str(tmp_path),
           "FT_SCRATCH": str(tmp_path / "scratch"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "jobs.pack"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == InvalidInput.exit_code == 2
    assert "data.sources[0]: bad.jsonl:1: not valid JSON (column 15)" in proc.stderr
    assert "Traceback" not in proc.stderr
    error = json.loads(proc.stdout.strip().splitlines()[-1])
    assert error["type"] == "error" and error["code"] == "InvalidData"
    assert manifest(store) is None


def test_the_packed_event_names_each_drop_reason_for_ftctl(tmp_path, step_env, capsys):
    from jobs.cli.cmd_run import packed_summary

    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}}]},
                          {"role": "assistant", "content": "A cat on a sunny window sill, asleep."}]}
    write_jsonl(tmp_path / "chat.jsonl", chat_rows() + [image])
    step_env(run_spec([{"path": "chat.jsonl", "format": "openai_chat"}]))
    execute("pack", run_step)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (event,) = [m for m in lines if m.get("message") == "packed"]
    assert event["reasons"] == {"image_content": 1}
    assert packed_summary(event).startswith("13 rows in, 12 written, 1 dropped (image_content: 1)")
