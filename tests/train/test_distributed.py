"""Training over several processes, launched by the train step itself through torchrun's
launcher: the loss matches one process with the same global batch, only rank 0 writes to the
store, the non-zero ranks do not tokenize, and a run stopped by SIGTERM resumes from the
checkpoint it saved. DDP runs on CPU (gloo); FSDP shards only across GPUs (accelerate), so its
runs need two."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import torch
from tests.train.distkit import TRAIN as STEP, losses, messages, run_step, step_env
from tests.train.trainkit import chat_row, committed_steps

from jobs.common.artifacts import read_tree
from jobs.common.errors import EXIT_PREEMPTED

# Identical rows: every batch is the same whatever the sampler (DistributedSampler splits the data
# one way, RandomSampler another), so one process at batch 2 and two at batch 1 take the same
# optimizer steps and the losses differ only by float rounding (measured: under 1e-5).
ROWS = [chat_row(i, "What is the capital of Germany?", "Berlin is the capital of Germany.") for i in range(20)]
TRAIN = {"learningRate": 0.01, "maxLength": 64, "maxSteps": 10, "packing": False, "checkpointEvery": 100,
         "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}


def two_procs(strategy: str) -> dict:
    return {"procsPerNode": 2, "strategy": strategy}


TWO_GPUS = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP shards across GPUs; needs two")
STRATEGIES = ["ddp", pytest.param("fsdp", marks=[pytest.mark.gpu, TWO_GPUS])]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_processes_match_one_with_the_same_global_batch(make_run, tiny_llama, strategy):
    one = make_run(model={"hf": str(tiny_llama)}, train={**TRAIN, "batchSize": 2}, splits={"train": ROWS})
    done = run_step(one)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = losses(one)

    two = make_run(model={"hf": str(tiny_llama)}, train={**TRAIN, "batchSize": 1, "distributed": two_procs(strategy)},
                   splits={"train": ROWS})
    done = run_step(two)
    assert done.returncode == 0, done.stderr[-5000:]
    metrics = read_tree(two.store, "runs/default/tiny/train")["metrics"]
    assert metrics["worldSize"] == 2 and metrics["steps"] == 10
    assert metrics["sharded"] is (strategy == "fsdp")
    assert losses(two) == pytest.approx(expected, abs=1e-3)
    # one progress line per step: rank 1 prints none
    assert [m["current"] for m in messages(done.stdout) if m["type"] == "progress"] == list(range(1, 11))
    passed = [m for m in messages(done.stdout) if m.get("message") == "pre-flight passed"]
    assert len(passed) == 1 and passed[0]["worldSize"] == 2
    # rank 0 tokenized; rank 1 read its rows from the store; nothing of them is left after the commit
    assert "rank 0 tokenized train: 20 rows" in done.stderr
    assert "rank 1 read train from rank 0: 20 tokenized rows" in done.stderr
    assert "rank 1 tokenized" not in done.stderr
    assert two.store.list("runs/default/tiny/train/tokenized") == []
    assert (two.read("adapter/adapter_model.safetensors") or b"")[:8]  # rank 0 gathered and saved the adapter


def wait_for_checkpoint(run, proc, timeout: float = 300) -> list[int]:
    deadline = time.time() + timeout
    while not committed_steps(run.store) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return committed_steps(run.store)


@pytest.mark.parametrize(
    "distributed",
    [None, two_procs("ddp"), pytest.param(two_procs("fsdp"), marks=[pytest.mark.gpu, TWO_GPUS])],
    ids=["one-process", "ddp-2", "fsdp-2"],
)
def test_sigterm_saves_a_checkpoint_and_the_next_attempt_resumes_from_it(make_run, tiny_llama, distributed):
    every, total = 4, 40
    train = {**TRAIN, "batchSize": 1, "maxSteps": total, "checkpointEvery": every,
             **({"distributed": distributed} if distributed else {})}
    run = make_run(model={"hf": str(tiny_llama)}, train=train, splits={"train": ROWS})
    first = subprocess.Popen(STEP, env=step_env(run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for_checkpoint(run, first), "no checkpoint was committed"
    first.send_signal(signal.SIGTERM)  # what the kubelet does on a drain or a preemption
    out, err = first.communicate(timeout=300)
    assert first.returncode == EXIT_PREEMPTED, err[-4000:]
    lines = messages(out)
    preempted = [m for m in lines if m["type"] == "progress" and "preemptedAt" in m]
    assert preempted, lines[-5:]
    at = preempted[-1]["preemptedAt"]
    assert at < total and max(committed_steps(run.store)) == at
    error = [m for m in lines if m["type"] == "error"]
    assert error and error[-1]["code"] == "Preempted"
    assert read_tree(run.store, "runs/default/tiny/train") is None  # nothing committed

    second = run_step(run)
    assert second.returncode == 0, second.stderr[-4000:]
    progress = [m for m in messages(second.stdout) if m["type"] == "progress"]
    assert progress[0]["current"] == at + 1 and progress[-1]["current"] == total, [
        m.get("message") for m in messages(second.stdout) if m["type"] == "event"
    ]
    assert all(m["resumedFrom"] == at and m["preemptedAt"] == at for m in progress)
    last_before_kill = max(m["current"] for m in lines if m["type"] == "progress")
    assert last_before_kill - at <= every  # at most one checkpoint interval is trained twice
    metrics = read_tree(run.store, "runs/default/tiny/train")["metrics"]
    assert metrics["resumedFromStep"] == at and metrics["steps"] == total
    assert [r["step"] for r in run.metrics() if "loss" in r] == list(range(1, total + 1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_fsdp_without_gpus_is_refused_before_any_worker_starts(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train={**TRAIN, "batchSize": 1, "distributed": two_procs("fsdp")},
                   splits={"train": ROWS})
    done = run_step(run, timeout=120)
    assert done.returncode == 2
    error = [m for m in messages(done.stdout) if m["type"] == "error"][-1]
    assert error["code"] == "InvalidInput" and "steps.train.distributed.strategy: fsdp" in error["message"]
    assert "pre-flight passed" not in done.stdout
