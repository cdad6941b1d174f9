"""The Job builder for a train step over several processes and pods, and its headless Service:
valid for every Kubernetes version the Job builder supports, checked strictly."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from controller.jobs import build_job, build_service
from jobs.common.spec import MAX_RUN_NAME, FineTuneRun
from tests.controller.test_jobs import K8S_VERSIONS, SETTINGS, env_of, run

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def distributed_run(name: str = "demo", **dist) -> FineTuneRun:
    r = run(steps={"pack": {}, "train": {"distributed": {"nodes": 2, "procsPerNode": 2, "port": 29600, **dist}}})
    return r.model_copy(update={"metadata": r.metadata.model_copy(update={"name": name})})


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_indexed_job_and_service_validate_against_upstream_schemas(version):
    r = distributed_run()
    kubernetes_validate.validate(build_job(r, "train", SETTINGS), version, strict=True)
    kubernetes_validate.validate(build_service(r), version, strict=True)


def test_two_pods_make_an_indexed_job_reachable_through_the_service():
    r = distributed_run()
    job, service = build_job(r, "train", SETTINGS), build_service(r)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert spec["template"]["spec"]["subdomain"] == service["metadata"]["name"] == "demo-train"
    env = env_of(job)
    # Pod 0's hostname is `<job>-0` (Indexed Jobs name their pods' hosts so) under the subdomain.
    assert env["MASTER_ADDR"]["value"] == "demo-train-0.demo-train" and env["MASTER_PORT"]["value"] == "29600"
    assert "JOB_COMPLETION_INDEX" not in env  # the Job controller sets it: the node rank
    # Retries are counted per index, and one index out of retries fails the whole Job.
    assert spec["backoffLimitPerIndex"] == 3 and spec["maxFailedIndexes"] == 0 and "backoffLimit" not in spec


def test_the_service_is_headless_selects_the_pods_and_is_labelled_like_the_job():
    r = distributed_run()
    job, service = build_job(r, "train", SETTINGS), build_service(r)
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert service["metadata"]["labels"] == job["spec"]["template"]["metadata"]["labels"]
    assert service["metadata"]["namespace"] == "ml" and service["spec"]["ports"][0]["port"] == 29600


def test_one_pod_rendezvouses_on_loopback_and_needs_no_service():
    r = distributed_run(nodes=1)
    job = build_job(r, "train", SETTINGS)
    assert build_service(r) is None
    assert env_of(job)["MASTER_ADDR"]["value"] == "127.0.0.1" and env_of(job)["MASTER_PORT"]["value"] == "29600"
    assert "completionMode" not in job["spec"] and "subdomain" not in job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 3
    assert build_service(run()) is None  # the default: one process


def test_only_the_train_step_gets_rendezvous_env_and_the_preempted_exit_code():
    r = distributed_run()
    for step in ("eval", "pack", "evaluate", "gguf"):
        job = build_job(r, step, SETTINGS)
        assert "MASTER_ADDR" not in env_of(job) and "completionMode" not in job["spec"]
        assert all(76 not in rule.get("onExitCodes", {}).get("values", []) for rule in job["spec"]["podFailurePolicy"]["rules"])
    rules = build_job(r, "train", SETTINGS)["spec"]["podFailurePolicy"]["rules"]
    assert rules == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "Ignore", "onExitCodes": {"containerName": "train", "operator": "In", "values": [76]}},
        {"action": "FailJob", "onExitCodes": {"containerName": "train", "operator": "In", "values": [2, 3, 4]}},
    ]


def test_grace_period_reaches_every_pod():
    r = run(job={"terminationGracePeriodSeconds": 600})
    for step in ("pack", "train"):
        assert build_job(r, step, SETTINGS)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 600
    assert "terminationGracePeriodSeconds" not in build_job(run(), "train", SETTINGS)["spec"]["template"]["spec"]


def test_longest_run_name_and_most_nodes_give_valid_host_and_service_names():
    r = distributed_run("x" * MAX_RUN_NAME, nodes=256)
    job, service = build_job(r, "train", SETTINGS), build_service(r)
    last_host = f"{job['metadata']['name']}-255"
    for label in (last_host, service["metadata"]["name"], job["spec"]["template"]["spec"]["subdomain"]):
        assert len(label) <= 63 and DNS_LABEL.match(label)
    kubernetes_validate.validate(job, K8S_VERSIONS[-1], strict=True)
