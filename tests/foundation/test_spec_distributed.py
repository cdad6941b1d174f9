"""steps.train.distributed: the defaults are one process; what cannot run is refused with its reason."""

import pytest

from tests.foundation.test_spec import errors_of, minimal
from jobs.common.specio import run_from_obj


def with_train(train: dict, **spec_over) -> dict:
    return minimal(steps={"pack": {}, "train": train}, **spec_over)


def test_defaults_are_a_single_process():
    dist = run_from_obj(minimal()).spec.steps.train.distributed
    assert (dist.nodes, dist.procs_per_node, dist.strategy, dist.world_size) == (1, 1, "ddp", 1)
    assert run_from_obj(minimal()).spec.job.termination_grace_period_seconds is None


def test_several_pods_and_processes_are_accepted():
    train = {"distributed": {"nodes": 2, "procsPerNode": 4, "strategy": "fsdp"}, "quantization": "4bit"}
    run = run_from_obj(with_train(train, resources={"train": {"nvidia.com/gpu": 4, "gpuMemory": "24Gi"}}))
    dist = run.spec.steps.train.distributed
    assert dist.world_size == 8 and run.spec.resources.train.gpu_memory == "24Gi"


def test_more_processes_than_gpus_is_refused():
    obj = with_train({"distributed": {"procsPerNode": 4}}, resources={"train": {"nvidia.com/gpu": 2}})
    msg = errors_of(obj)
    assert "procsPerNode: 4 processes per pod" in msg and "2 GPU(s)" in msg and "a GPU of its own" in msg


def test_processes_without_gpus_run_on_cpu():
    # No GPU asked for: CPU processes (gloo), as ftctl run and the tests use them.
    run = run_from_obj(with_train({"distributed": {"procsPerNode": 2}}))
    assert run.spec.steps.train.distributed.world_size == 2


def test_zero3_is_refused_with_the_reason():
    msg = errors_of(with_train({"distributed": {"procsPerNode": 2, "strategy": "zero3"}}))
    assert "spec.steps.train.distributed" in msg and "DeepSpeed, which the train image does not ship" in msg
    assert "fsdp" in msg


def test_qlora_needs_lora():
    msg = errors_of(with_train({"quantization": "4bit", "lora": None}))
    assert "spec.steps.train" in msg and "quantization: 4bit (QLoRA) trains LoRA adapters" in msg


@pytest.mark.parametrize("method, fmt", [("sft", "openai_chat"), ("dpo", "dpo"), ("kto", "dpo"), ("orpo", "dpo"),
                                         ("classification", "classification"), ("grpo", "openai_chat")])
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_every_method_runs_under_ddp_and_fsdp(method, fmt, strategy):
    # All methods train through transformers' Trainer or TRL's trainers, which accelerate distributes.
    obj = minimal(steps={"pack": {"format": fmt}, "train": {"method": method, "distributed": {"procsPerNode": 2, "strategy": strategy}}})
    assert run_from_obj(obj).spec.steps.train.distributed.strategy == strategy


@pytest.mark.parametrize("field, value, expected", [
    ("nodes", 0, "nodes: must be >= 1"),
    ("procsPerNode", 65, "procsPerNode: must be <= 64"),
    ("strategy", "tp", "strategy: must be one of"),
    ("port", 80, "port: must be >= 1024"),
    ("rendezvousTimeoutSeconds", 1, "rendezvousTimeoutSeconds: must be >= 5"),
])
def test_bad_distributed_fields_are_named(field, value, expected):
    assert f"spec.steps.train.distributed.{expected}" in errors_of(with_train({"distributed": {field: value}}))


def test_grace_period_is_bounded():
    assert "spec.job.terminationGracePeriodSeconds: must be <= 3600" in errors_of(
        minimal(job={"terminationGracePeriodSeconds": 7200}))
