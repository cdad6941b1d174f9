"""Runs end to end against the emulator: success, failures, retries, Kueue, progress,
spec changes, invalid specs and missing Secrets."""

from __future__ import annotations

import base64
import json
import logging
import urllib.request

import pytest

from tests.controller.harness import STEPS, Cluster, assert_allowed_by_rbac, controller_settings, full_spec, settle, wait_for
from jobs.common import keys

pytestmark = pytest.mark.asyncio

ERROR_TAIL = (
    "2026-01-01 00:00:00 ERROR ft.step: InvalidData: data.sources[0]: line 3: not valid JSON\n"
    '{"type": "error", "step": "eval", "code": "InvalidData", "message": "data.sources[0]: line 3: not valid JSON"}\n'
)


def status_history(cluster: Cluster, name: str) -> list[dict]:
    versions = cluster.emulator.objects["finetune.dev/v1alpha1/finetuneruns", cluster.ns, name].history
    return [dict(v).get("status") for v in versions if v is not None]


async def test_whole_run_succeeds(cluster: Cluster, operators):
    settings = controller_settings(cluster)
    await operators(settings)
    uid = await cluster.create_run("r1", full_spec())
    for step in STEPS:
        job = f"r1-{step}"
        await wait_for(f"Job {job}", lambda: job in cluster.jobs("r1"))
        # One Job at a time, in order.
        assert set(cluster.jobs("r1")) == {f"r1-{s}" for s in STEPS[: STEPS.index(step) + 1]}
        await wait_for(f"{step} Running", lambda: cluster.step("r1", step).get("phase") == "Running")
        assert cluster.status("r1")["currentStep"] == step
        await cluster.complete_job(job)
    await wait_for("Succeeded", lambda: cluster.status("r1").get("phase") == "Succeeded")

    status = cluster.status("r1")
    assert [s["phase"] for s in status["steps"]] == ["Succeeded"] * 5
    assert all(s["job"] == f"r1-{s['name']}" and s["attempts"] == 1 for s in status["steps"])
    assert status["progress"] == "5/5" and "currentStep" not in status
    assert status["artifacts"]["trainResult"] == f"{cluster.store.uri}/runs/{cluster.ns}/r1/train/result.txt"
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Succeeded"]["status"] == "True" and conds["Succeeded"]["reason"] == "AllStepsSucceeded"
    assert conds["Accepted"]["reason"] == "SpecValid" and conds["Running"]["status"] == "False"
    # kind: garbage collection deletes the Jobs with the run; here, every Job is owned by it.
    for job in cluster.jobs("r1").values():
        (ref,) = job["metadata"]["ownerReferences"]
        assert ref["uid"] == uid and ref["controller"] is True and ref["kind"] == "FineTuneRun"
    assert sorted(cluster.created_jobs()) == sorted(f"r1-{s}" for s in STEPS)
    # Jobs are watched with a server-side label selector (kind: only a real server applies it;
    # the handlers filter by label again, which is what makes this emulator's answers safe).
    job_watches = cluster.requests("watch", "batch/v1/jobs") + cluster.requests("list", "batch/v1/jobs")
    assert job_watches and all(r.params.get("labelSelector") == "finetune.dev/run" for r in job_watches)

    # Status was written only when it changed: every status patch made a different status.
    history = status_history(cluster, "r1")
    changes = sum(1 for a, b in zip(history, history[1:]) if a != b)
    assert len(cluster.writes("finetune.dev/v1alpha1/finetuneruns", "r1", "status")) == changes

    # A finished run is left alone: nothing is created or written any more.
    before = len(list(cluster.emulator))
    await settle(1.0)  # over three timer periods
    assert sorted(cluster.created_jobs()) == sorted(f"r1-{s}" for s in STEPS)
    after = status_history(cluster, "r1")
    assert after[-1] == history[-1] and sum(1 for a, b in zip(after, after[1:]) if a != b) == changes
    assert len(list(cluster.emulator)) - before < 5  # at most kopf's removal of its finalizer

    # Liveness and metrics.
    with urllib.request.urlopen(settings.liveness, timeout=5) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'finetune_runs{phase="Succeeded"} 1.0' in text
    assert 'finetune_step_duration_seconds_count{phase="Succeeded",step="train"} 1.0' in text
    assert_allowed_by_rbac(cluster)


async def test_progress_is_read_from_the_store(cluster: Cluster, operators):
    await operators(controller_settings(cluster))
    await cluster.create_run("p1", full_spec())
    await wait_for("eval Job", lambda: "p1-eval" in cluster.jobs())
    await cluster.start_job("p1-eval")
    progress = {"step": "eval", "current": 2, "total": 5, "percent": 40.0, "etaSeconds": 12.5, "loss": 1.25}
    cluster.store.put_bytes(keys.join(keys.step_prefix(cluster.ns, "p1", "eval"), "progress.json"), json.dumps(progress).encode())
    await wait_for("progress in status", lambda: cluster.step("p1", "eval").get("progress"))
    assert cluster.step("p1", "eval")["progress"] == {"current": 2, "total": 5, "percent": 40.0, "etaSeconds": 12.5, "loss": 1.25}
    assert cluster.status("p1")["progress"] == "0/5 eval 40%"


async def test_failing_step_fails_the_run(cluster: Cluster, operators):
    settings = controller_settings(cluster)
    await operators(settings)
    await cluster.create_run("f1", full_spec())
    await wait_for("eval Job", lambda: "f1-eval" in cluster.jobs())
    await cluster.fail_job("f1-eval", reason="PodFailurePolicy", exit_code=2, log_tail=ERROR_TAIL)
    await wait_for("Failed", lambda: cluster.status("f1").get("phase") == "Failed")

    status = cluster.status("f1")
    assert status["error"]["code"] == "InvalidData" and status["error"]["step"] == "eval"
    eval_step = cluster.step("f1", "eval")
    assert eval_step["phase"] == "Failed" and eval_step["reason"] == "InvalidData"
    assert eval_step["message"] == (
        "data.sources[0]: line 3: not valid JSON (Job f1-eval failed: PodFailurePolicy, exit code 2)"
    )
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "StepFailed"
    await settle(1.0)
    assert cluster.created_jobs() == ["f1-eval"]  # no next step, no retry by the controller
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=5) as resp:
        assert 'finetune_job_failures_total{reason="InvalidData",step="eval"} 1.0' in resp.read().decode()
    assert_allowed_by_rbac(cluster)


async def test_retry_policy(cluster: Cluster, operators):
    """A crash (exit 1) is retried by the Job itself; the run waits and says so. A permanent
    exit code fails the Job at once (kind: the podFailurePolicy itself acts only there)."""
    await operators(controller_settings(cluster))
    await cluster.create_run("t1", full_spec())
    await wait_for("eval Job", lambda: "t1-eval" in cluster.jobs())
    policy = cluster.jobs()["t1-eval"]["spec"]
    assert policy["backoffLimit"] == 2
    assert {"action": "FailJob", "onExitCodes": {"containerName": "eval", "operator": "In", "values": [2, 3, 4]}} in policy["podFailurePolicy"]["rules"]

    # First pod crashed, the Job controller started a second one.
    await cluster.job_status("t1-eval", {"active": 1, "failed": 1, "startTime": "2026-01-01T00:00:00Z"})
    await wait_for("2 attempts", lambda: cluster.step("t1", "eval").get("attempts") == 2)
    assert cluster.status("t1")["phase"] == "Running" and cluster.created_jobs() == ["t1-eval"]
    await cluster.complete_job("t1-eval")
    await wait_for("pack Job", lambda: "t1-pack" in cluster.jobs())

    # pack: crashes until the backoff limit is reached.
    await cluster.fail_job("t1-pack", reason="BackoffLimitExceeded", exit_code=1, failed=3,
                           log_tail="Traceback (most recent call last):\nRuntimeError: boom\n")
    await wait_for("Failed", lambda: cluster.status("t1").get("phase") == "Failed")
    pack = cluster.step("t1", "pack")
    assert pack["attempts"] == 3 and pack["reason"] == "BackoffLimitExceeded"
    assert pack["message"] == "RuntimeError: boom (Job t1-pack failed: BackoffLimitExceeded, exit code 1)"
    await settle()
    assert cluster.created_jobs() == ["t1-eval", "t1-pack"]


async def test_kueue_queue_label_and_suspend(cluster: Cluster, operators):
    await operators(controller_settings(cluster, default_queue="shared"))
    await cluster.create_run("q1", full_spec(queue="team-a"))
    await cluster.create_run("q2", full_spec())
    await wait_for("Jobs", lambda: {"q1-eval", "q2-eval"} <= set(cluster.jobs()))
    q1, q2 = cluster.jobs()["q1-eval"], cluster.jobs()["q2-eval"]
    assert q1["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a" and q1["spec"]["suspend"] is True
    assert q2["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "shared"
    await wait_for("queued", lambda: "queued" in (cluster.step("q1", "eval").get("message") or ""))
    # Kueue admits the Job: it unsuspends it and the Job controller starts it.
    await cluster.unsuspend_job("q1-eval")
    await cluster.start_job("q1-eval")
    await wait_for("admitted", lambda: "message" not in cluster.step("q1", "eval"))
    await cluster.complete_job("q1-eval")
    await wait_for("next Job queued too", lambda: "q1-pack" in cluster.jobs())
    assert cluster.jobs()["q1-pack"]["spec"]["suspend"] is True


async def test_spec_changes_after_start_are_refused(cluster: Cluster, operators):
    await operators(controller_settings(cluster))
    await cluster.create_run("s1", full_spec())
    await wait_for("eval Job", lambda: "s1-eval" in cluster.jobs())
    await cluster.patch_run("s1", {"spec": {"resources": {"pack": {"cpu": "64"}}}})
    await wait_for("SpecChanged", lambda: any(c["type"] == "SpecChanged" for c in cluster.status("s1").get("conditions", [])))
    await cluster.complete_job("s1-eval")
    await wait_for("pack Job", lambda: "s1-pack" in cluster.jobs())
    # The run goes on with the spec it started with.
    assert cluster.jobs()["s1-pack"]["spec"]["template"]["spec"]["containers"][0]["resources"] == {}


async def test_invalid_spec_fails_without_a_job(cluster: Cluster, operators):
    await operators(controller_settings(cluster))
    spec = full_spec()
    spec["steps"]["evaluate"] = {"gate": "tunedScore >= 0.9"}  # passes the CRD schema, not the model
    await cluster.create_run("bad", spec)
    await wait_for("Failed", lambda: cluster.status("bad").get("phase") == "Failed")
    status = cluster.status("bad")
    assert status["error"]["code"] == "InvalidSpec"
    assert status["error"]["message"].startswith("spec.steps.evaluate.gate: gate: unknown metric 'tunedScore'")
    accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
    assert accepted["status"] == "False" and accepted["reason"] == "InvalidSpec"
    await settle()
    assert cluster.created_jobs() == []


async def test_missing_secret_waits_with_backoff(cluster: Cluster, operators, caplog):
    caplog.set_level(logging.DEBUG)  # every log line of kopf and the controller is checked below
    await operators(controller_settings(cluster))
    spec = full_spec()
    spec["steps"]["eval"]["backend"] = {
        "endpoint": {"baseUrl": "https://llm.example.com/v1", "model": "m",
                     "apiKeySecret": {"name": "llm-key", "key": "OPENAI_API_KEY"}}
    }
    await cluster.create_run("k1", spec)
    await wait_for("SecretNotFound", lambda: any(
        c["reason"] == "SecretNotFound" for c in cluster.status("k1").get("conditions", [])))
    status = cluster.status("k1")
    assert status["phase"] == "Pending"
    running = next(c for c in status["conditions"] if c["type"] == "Running")
    assert running["status"] == "False"
    assert running["message"] == "Secret 'llm-key' not found in namespace %s (step eval needs its key 'OPENAI_API_KEY')" % cluster.ns
    await settle(1.5)
    assert cluster.created_jobs() == []
    # Retried with backoff, not in a loop: a handful of reads in 1.5 s.
    reads = len(cluster.requests("fetch", "v1/secrets", "llm-key"))
    assert 2 <= reads <= 12

    planted = base64.b64encode(b"planted-s3cr3t-value").decode()
    await cluster.create_secret("llm-key", {"OPENAI_API_KEY": planted})
    await wait_for("eval Job", lambda: "k1-eval" in cluster.jobs(), timeout=20)
    env = cluster.jobs()["k1-eval"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm-key", "key": "OPENAI_API_KEY"}}} in env
    await wait_for("Running", lambda: cluster.status("k1").get("phase") == "Running")
    assert not any(c["reason"] == "SecretNotFound" for c in cluster.status("k1")["conditions"])
    # The value is never copied anywhere: not into the run, the Job or the logs.
    seen = json.dumps(cluster.run("k1")) + json.dumps(cluster.jobs()) + caplog.text
    assert planted not in seen and "planted-s3cr3t-value" not in seen
    assert_allowed_by_rbac(cluster)
