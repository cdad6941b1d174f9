"""A train step over several pods against the emulator: its headless Service comes before its
Job and belongs to the run; a failed pre-flight names its reason; a resumed attempt says so."""

from __future__ import annotations

import json

import pytest

from tests.controller.harness import Cluster, assert_allowed_by_rbac, controller_settings, settle, wait_for
from jobs.common import keys

pytestmark = pytest.mark.asyncio

SERVICES = "v1/services"


def two_node_spec() -> dict:
    return {
        "model": {"hf": "/models/tiny"},
        "data": {"sources": [{"path": "/data/train.jsonl", "format": "openai_chat"}]},
        "steps": {"pack": {}, "train": {"maxSteps": 2, "distributed": {"nodes": 2, "procsPerNode": 2, "strategy": "fsdp"}}},
        "job": {"backoffLimit": 2},
    }


def services(cluster: Cluster) -> dict[str, dict]:
    return {name: obj.raw for (res, ns, name), obj in cluster.emulator.objects.items()
            if res.plural == "services" and ns == cluster.ns and not obj.deleted}


async def to_train(cluster: Cluster, run: str) -> None:
    await wait_for("pack Job", lambda: f"{run}-pack" in cluster.jobs())
    await cluster.complete_job(f"{run}-pack")


async def test_the_service_is_created_before_the_job_and_owned_by_the_run(cluster: Cluster, operators):
    await operators(controller_settings(cluster))
    uid = await cluster.create_run("d1", two_node_spec())
    assert not services(cluster)  # the single-pod pack step needs none
    await to_train(cluster, "d1")
    await wait_for("train Job", lambda: "d1-train" in cluster.jobs())

    (service,) = services(cluster).values()
    (ref,) = service["metadata"]["ownerReferences"]
    assert ref["uid"] == uid and ref["controller"] is True and ref["kind"] == "FineTuneRun"
    log = list(cluster.emulator)
    created = [r for r in log if r.action is not None and r.action.value == "CREATE"]
    names = [(r.resource.plural, (r.data or {}).get("metadata", {}).get("name")) for r in created]
    assert names.index(("services", "d1-train")) < names.index(("jobs", "d1-train"))

    job = cluster.jobs()["d1-train"]
    pod = job["spec"]["template"]
    assert pod["spec"]["subdomain"] == service["metadata"]["name"] and job["spec"]["completionMode"] == "Indexed"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert_allowed_by_rbac(cluster)


async def test_a_service_of_another_owner_holds_the_job_back_until_it_is_gone(cluster: Cluster, operators):
    await cluster._send("POST", f"/api/v1/namespaces/{cluster.ns}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "d2-train", "namespace": cluster.ns},
        "spec": {"clusterIP": "None", "selector": {"app": "other"}}})
    await operators(controller_settings(cluster))
    await cluster.create_run("d2", two_node_spec())
    await to_train(cluster, "d2")
    await wait_for("waiting message", lambda: "waiting for Service d2-train" in (cluster.step("d2", "train").get("message") or ""))
    await settle()
    assert "d2-train" not in cluster.jobs()

    await cluster._send("DELETE", f"/api/v1/namespaces/{cluster.ns}/services/d2-train")
    await wait_for("train Job", lambda: "d2-train" in cluster.jobs(), timeout=30)
    assert services(cluster)["d2-train"]["metadata"]["ownerReferences"][0]["name"] == "d2"


async def test_its_own_service_from_an_earlier_reconcile_is_taken_as_is(cluster: Cluster, operators):
    await operators(controller_settings(cluster))
    uid = await cluster.create_run("d3", two_node_spec())
    owner = {"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun", "name": "d3", "uid": uid, "controller": True}
    await cluster._send("POST", f"/api/v1/namespaces/{cluster.ns}/services", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "d3-train", "namespace": cluster.ns, "ownerReferences": [owner]},
        "spec": {"clusterIP": "None", "selector": {"finetune.dev/run": "d3", "finetune.dev/step": "train"}}})
    await to_train(cluster, "d3")
    await wait_for("train Job", lambda: "d3-train" in cluster.jobs())


async def test_a_failed_preflight_names_its_reason_in_the_step_and_the_run(cluster: Cluster, operators):
    await operators(controller_settings(cluster))
    await cluster.create_run("d4", two_node_spec())
    await to_train(cluster, "d4")
    await wait_for("train Job", lambda: "d4-train" in cluster.jobs())
    line = {"type": "error", "step": "train", "code": "RendezvousTimeout",
            "message": "rank 2 of 4: not every rank joined d4-train-0.d4-train:29500 within 300 s"}
    await cluster.fail_job("d4-train", reason="MaxFailedIndexesExceeded", exit_code=1, failed=6,
                           log_tail="ERROR ft.step: RendezvousTimeout\n" + json.dumps(line) + "\n")
    await wait_for("Failed", lambda: cluster.status("d4").get("phase") == "Failed")
    step = cluster.step("d4", "train")
    assert step["reason"] == "RendezvousTimeout"
    assert step["message"].startswith("rank 2 of 4: not every rank joined") and "exit code 1" in step["message"]
    assert step["attempts"] == 3  # 6 failed pods of a 2-pod Job: 3 attempts
    error = cluster.status("d4")["error"]
    assert error["code"] == "RendezvousTimeout" and error["step"] == "train" and "within 300 s" in error["message"]


async def test_a_resumed_attempt_says_where_it_was_preempted_and_resumed(cluster: Cluster, operators):
    await operators(controller_settings(cluster))
    await cluster.create_run("d5", two_node_spec())
    await to_train(cluster, "d5")
    await wait_for("train Job", lambda: "d5-train" in cluster.jobs())
    # The preempted pods exited 76 (ignored by the policy); the Job started two new ones.
    await cluster.job_status("d5-train", {"active": 2, "failed": 2, "startTime": "2026-01-01T00:00:00Z"})
    progress = {"step": "train", "current": 130, "total": 200, "percent": 65.0, "resumedFrom": 120, "preemptedAt": 120}
    cluster.store.put_bytes(keys.join(keys.step_prefix(cluster.ns, "d5", "train"), "progress.json"), json.dumps(progress).encode())
    await wait_for("resume note", lambda: cluster.step("d5", "train").get("message"))
    step = cluster.step("d5", "train")
    assert step["message"] == "preempted at step 120, resumed from step 120"
    assert step["progress"]["resumedFrom"] == 120 and step["attempts"] == 2
