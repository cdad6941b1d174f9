"""Pre-flight of a distributed train step, run by the same `python -m jobs.train` a pod runs:
two "nodes" (node ranks 0 and 1, two launchers on loopback) rendezvous and train; a node whose
master does not resolve, and a node whose peer never comes, fail in seconds with a named reason
in the error line and the termination message."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from tests.train.distkit import TRAIN as STEP, messages, step_env
from tests.train.trainkit import chat_rows

from jobs.common.artifacts import read_tree
from jobs.common.errors import PreflightError
from jobs.common.spec import Distributed
from jobs.train.launch import free_port, plan_launch, torchrun_argv
from jobs.train.preflight import check_sum, expected_sum

TRAIN = {"batchSize": 1, "maxSteps": 3, "maxLength": 64, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
TWO_NODES = {"nodes": 2, "procsPerNode": 1, "rendezvousTimeoutSeconds": 5}


def test_a_wrong_sum_is_a_collective_mismatch():
    assert expected_sum(4) == 10
    check_sum(10.0, 4)
    with pytest.raises(PreflightError) as err:
        check_sum(6.0, 4)
    assert err.value.code == "CollectiveMismatch" and "gave 6.0, expected 10.0" in err.value.message


def test_a_pod_takes_its_node_rank_from_the_completion_index():
    dist = Distributed(nodes=3, procs_per_node=2, port=29600)
    plan = plan_launch(dist, {"MASTER_ADDR": "run-train-0.run-train", "JOB_COMPLETION_INDEX": "2"})
    assert (plan.nnodes, plan.node_rank, plan.nproc_per_node, plan.master_port, plan.world_size) == (3, 2, 2, 29600, 6)
    argv = torchrun_argv(plan, "10.0.0.5")
    assert "--rdzv-backend=static" in argv and "--node-rank=2" in argv and "--master-addr=10.0.0.5" in argv
    assert "--rdzv-conf=timeout=300" in argv and argv[-2:] == ["--module", "jobs.train"]
    with pytest.raises(PreflightError) as err:
        plan_launch(dist, {"MASTER_ADDR": "x", "JOB_COMPLETION_INDEX": "3"})
    assert "JOB_COMPLETION_INDEX=3" in err.value.message


def test_one_machine_runs_every_node_s_workers():
    plan = plan_launch(Distributed(nodes=2, procs_per_node=2), {})
    assert (plan.nnodes, plan.nproc_per_node, plan.master_addr) == (1, 4, "127.0.0.1")


def start_node(run, index: int, port: int, addr: str = "127.0.0.1") -> subprocess.Popen:
    env = step_env(run, MASTER_ADDR=addr, MASTER_PORT=str(port), JOB_COMPLETION_INDEX=str(index),
                   FT_SCRATCH=str(run.tmp / f"pod-{index}"), FT_TERMINATION_LOG=str(run.tmp / f"termination-{index}"))
    return subprocess.Popen(STEP, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def failure(run, proc: subprocess.Popen, index: int = 0) -> tuple[dict, float]:
    started = time.monotonic()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err[-3000:]
    error = [m for m in messages(out) if m["type"] == "error"][-1]
    assert json.loads((run.tmp / f"termination-{index}").read_text()) == error
    return error, time.monotonic() - started


def test_two_nodes_rendezvous_on_loopback_and_train(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train={**TRAIN, "distributed": TWO_NODES},
                   splits={"train": chat_rows(8)})
    port = free_port()
    nodes = [start_node(run, 1, port), start_node(run, 0, port)]  # the worker node may come first
    results = [p.communicate(timeout=600) for p in nodes]
    for proc, (_, err) in zip(nodes, results):
        assert proc.returncode == 0, err[-3000:]
    metrics = read_tree(run.store, "runs/default/tiny/train")["metrics"]
    assert metrics["worldSize"] == 2 and metrics["steps"] == 3
    node1_out, node0_out = results[1][0], results[0][0]
    assert "pre-flight passed" in node0_out or "pre-flight passed" in node1_out
    # only rank 0 (on node 0) prints progress; node 1's launcher only launches
    assert not [m for m in messages(results[0][0]) if m["type"] == "progress"]


def test_a_master_that_does_not_resolve_fails_in_seconds(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train={**TRAIN, "distributed": TWO_NODES},
                   splits={"train": chat_rows(8)})
    error, seconds = failure(run, start_node(run, 1, free_port(), addr="tiny-train-0.no-such-service.invalid"), index=1)
    assert error["code"] == "MasterNotResolvable" and "tiny-train-0.no-such-service.invalid" in error["message"]
    assert seconds < 60


def test_a_missing_peer_is_a_rendezvous_timeout(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train={**TRAIN, "distributed": TWO_NODES},
                   splits={"train": chat_rows(8)})
    error, seconds = failure(run, start_node(run, 0, free_port()))  # node 1 never starts
    assert error["code"] == "RendezvousTimeout", error
    assert "node 0 of 2" in error["message"] and "within 5 s" in error["message"]
    assert seconds < 60
