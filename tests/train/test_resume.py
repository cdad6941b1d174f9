"""Checkpoints in the store: a killed train step resumes from its last committed checkpoint;
a corrupt checkpoint falls back to the previous good one; another configuration's are ignored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from tests.train.trainkit import CKPT, chat_rows, committed_steps, crash_after_training

from jobs.common.artifacts import read_tree
from jobs.common.progress import parse_line

TRAIN = {"batchSize": 2, "learningRate": 0.005, "maxLength": 64, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}


def lines(text: str) -> list[dict]:
    return [m for m in map(parse_line, text.splitlines()) if m]


def test_killed_process_resumes_from_committed_checkpoint(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train={**TRAIN, "maxSteps": 24, "checkpointEvery": 3},
                   splits={"train": chat_rows(16)})
    env = {**os.environ, **run.env}
    cmd = [sys.executable, "-m", "jobs.train"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 300
    while not committed_steps(run.store) and time.time() < deadline and first.poll() is None:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    saved = committed_steps(run.store)
    assert saved and max(saved) < 24, f"killed too late: checkpoints {saved}"
    assert read_tree(run.store, "runs/default/tiny/train") is None  # nothing committed

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    messages = lines(second.stdout)
    resumed = [m for m in messages if m.get("message") == "resuming"]
    assert resumed and resumed[0]["fromStep"] == max(saved)
    progress = [m["current"] for m in messages if m["type"] == "progress"]
    assert progress[0] == max(saved) + 1 and progress[-1] == 24
    manifest = read_tree(run.store, "runs/default/tiny/train")
    assert manifest["metrics"]["resumedFromStep"] == max(saved) and manifest["metrics"]["steps"] == 24
    # the metrics log is whole: every step once, the part before the kill carried in the checkpoint
    assert [r["step"] for r in run.metrics() if "loss" in r] == list(range(1, 25))


def test_corrupt_checkpoint_falls_back_to_previous_good_one(make_run, tiny_llama, capsys, monkeypatch):
    run = make_run(model={"hf": str(tiny_llama)}, train={**TRAIN, "maxSteps": 5, "checkpointEvery": 2},
                   splits={"train": chat_rows(8)})
    with monkeypatch.context() as m:
        crash_after_training(m)
        with pytest.raises(RuntimeError):
            run.execute()
    assert committed_steps(run.store) == [2, 4]  # none at the final step: the output is the final state
    key = f"{CKPT}/checkpoint-4/adapter_model.safetensors"
    data = bytearray(run.store.get_bytes(key))
    data[-1] ^= 0xFF  # same size, different content
    run.store.put_bytes(key, bytes(data))

    run.env["FT_SCRATCH"] = str(run.tmp / "fresh-pod")  # a new pod: no local copy of anything
    capsys.readouterr()
    manifest = run.execute()
    out = lines(capsys.readouterr().out)
    assert manifest["metrics"]["resumedFromStep"] == 2 and manifest["metrics"]["steps"] == 5
    events = [m["message"] for m in out if m["type"] == "event"]
    assert any("checkpoint-4 is corrupt" in e and "checksum mismatch" in e for e in events)
    assert "resuming from checkpoint-2, the previous good checkpoint" in events
    assert [m["current"] for m in out if m["type"] == "progress"] == [3, 4, 5]
    assert committed_steps(run.store) == []  # finished: checkpoints are no longer needed


def test_checkpoints_of_another_configuration_are_not_resumed(make_run, tiny_llama, monkeypatch):
    run = make_run(model={"hf": str(tiny_llama)}, train={**TRAIN, "maxSteps": 3, "checkpointEvery": 2},
                   splits={"train": chat_rows(8)})
    with monkeypatch.context() as m:
        crash_after_training(m)
        with pytest.raises(RuntimeError):
            run.execute()
    assert committed_steps(run.store) == [2]
    changed = make_run(model={"hf": str(tiny_llama)}, train={**TRAIN, "learningRate": 0.001, "maxSteps": 3,
                                                             "checkpointEvery": 2}, splits={"train": chat_rows(8)})
    manifest = changed.execute()
    assert manifest["metrics"]["resumedFromStep"] is None and manifest["metrics"]["steps"] == 3
