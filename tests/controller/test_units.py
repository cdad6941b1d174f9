"""Pure parts of the controller: observing Jobs, status patches, settings, RBAC, metrics."""

from __future__ import annotations

import pytest

from controller.metrics import Metrics
from controller.observe import JobInfo, StepError, StepFacts, job_info, needs, observe_step, parse_termination, pod_error
from controller.rbac import CONTROLLER_RULES, FRAMEWORK_RULES, policy_rules
from controller.reconcile import SPEC_ANNOTATION, effective_spec, merge_patch, spec_hash
from controller.settings import ControllerSettings
from jobs.common.status import RunStatus, StepStatus
from jobs.pipeline.planner import Observed

UID = "u-1"


def job(**status) -> dict:
    return {
        "metadata": {"name": "r-train", "labels": {"finetune.dev/run": "r", "finetune.dev/step": "train"},
                     "ownerReferences": [{"uid": UID, "controller": True}]},
        "spec": {},
        "status": status,
    }


def test_job_info_reads_conditions_and_counts():
    done = job_info(job(succeeded=1, failed=1, startTime="t0", completionTime="t1",
                        conditions=[{"type": "Complete", "status": "True"}]))
    assert done.complete and not done.failed and done.attempts == 2 and done.finished == "t1" and done.owner_uid == UID
    failed = job_info(job(failed=3, conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                  "message": "limit", "lastTransitionTime": "t2"}]))
    assert failed.failed and failed.reason == "BackoffLimitExceeded" and failed.finished == "t2"
    pending = job(conditions=[{"type": "Complete", "status": "False"}])
    pending["spec"]["suspend"] = True
    assert job_info(pending).queued and not job_info(pending).complete
    assert job_info({"metadata": {"name": "x", "labels": {}}}) is None  # not a step's Job


def test_termination_message_parsing():
    tail = 'Traceback...\nERROR boom\n{"type": "error", "step": "train", "code": "IntegrityError", "message": "bad sha"}\n'
    assert parse_termination(tail, 3) == StepError("IntegrityError", "bad sha", 3)
    assert parse_termination("just a line\n{not json\nlast words", 1) == StepError(None, "last words", 1)
    assert parse_termination(None, 137) == StepError(None, None, 137)


def test_pod_error_takes_the_latest_failed_attempt():
    def pod(code, at, msg):
        term = {"exitCode": code, "finishedAt": at, "message": msg}
        return {"status": {"containerStatuses": [{"name": "train", "state": {"terminated": term}}]}}

    pods = [pod(1, "2026-01-01T00:00:01Z", "first"), pod(2, "2026-01-01T00:00:09Z", "second"), pod(0, "2026-01-01T00:00:10Z", "ok")]
    assert pod_error(pods, "train") == StepError(None, "second", 2)
    assert pod_error([], "train") is None


def test_finished_steps_are_carried_not_reobserved():
    prev = StepStatus(name="train", phase="Succeeded", job="r-train", attempts=1, started="a", finished="b")
    assert observe_step(None, prev, StepFacts(), UID) == Observed(
        phase="Succeeded", attempts=1, job="r-train", started="a", finished="b")
    # A Job left by an earlier run of the same name is waited for, never taken as this run's.
    other = JobInfo(name="r-train", run="r", step="train", owner_uid="old", complete=True)
    obs = observe_step(other, None, StepFacts(), UID)
    assert obs.phase == "Running" and "earlier run" in obs.message


def test_attempts_never_go_down_while_a_job_has_no_pod_yet():
    prev = StepStatus(name="train", phase="Running", job="r-train", attempts=2)
    just_created = job_info(job())  # no pod yet: the Job counts no attempts
    assert just_created.attempts == 0
    assert observe_step(just_created, prev, StepFacts(), UID).attempts == 2
    assert observe_step(job_info(job(failed=2, active=1)), prev, StepFacts(), UID).attempts == 3


def test_needs_reads_only_what_changed():
    jobs = {
        "eval": JobInfo(name="r-eval", run="r", step="eval", owner_uid=UID, complete=True),
        "pack": JobInfo(name="r-pack", run="r", step="pack", owner_uid=UID, complete=True),
        "train": JobInfo(name="r-train", run="r", step="train", owner_uid=UID),
    }
    prev = RunStatus(steps=[StepStatus(name="eval", phase="Succeeded")])
    assert needs(["eval", "pack", "train"], jobs, prev, UID) == {"pack": "manifest", "train": "progress"}


def test_merge_patch():
    old = {"phase": "Failed", "error": {"code": "X"}, "artifacts": {"a": "1", "b": "2"}}
    new = {"phase": "Running", "artifacts": {"a": "1"}}
    assert merge_patch(old, new) == {"phase": "Running", "error": None, "artifacts": {"b": None}}
    assert merge_patch(new, dict(new)) == {}


def test_spec_snapshot_and_hash():
    spec = {"model": {"hf": "/m"}, "steps": {"pack": {}}, "suspend": False}
    body = {"metadata": {"annotations": {SPEC_ANNOTATION: '{"model": {"hf": "/m"}, "steps": {"pack": {}}}'}},
            "spec": {"model": {"hf": "/other"}, "steps": {"pack": {}}, "suspend": True, "cleanup": "deleteArtifacts"}}
    assert effective_spec(body) == {"model": {"hf": "/m"}, "steps": {"pack": {}}, "suspend": True, "cleanup": "deleteArtifacts"}
    assert spec_hash(spec) == spec_hash({**spec, "suspend": True, "cleanup": "deleteArtifacts"})
    assert spec_hash(spec) != spec_hash({**spec, "queue": "q"})


def test_settings_from_env():
    s = ControllerSettings.from_env({"POD_NAMESPACE": "ml", "FT_IMAGE": "img:1", "FT_IMAGE_TRAIN": "train:2",
                                     "FT_STORE_URI": "s3://bucket/p", "FT_WORKERS": "4"})
    assert s.namespaces == ("ml",) and not s.clusterwide and s.workers == 4
    assert s.images["train"] == "train:2" and s.images["pack"] == "img:1"
    every = ControllerSettings.from_env({"FT_NAMESPACES": "*"})
    assert every.clusterwide and every.namespaces == () and every.images["eval"].startswith("finetune-operator/eval:")
    # one image serves train and evaluate (images/train/Dockerfile)
    assert every.images["evaluate"] == every.images["train"] and every.images["train"].startswith("finetune-operator/train:")
    assert ControllerSettings.from_env({"FT_NAMESPACES": "a, b"}).namespaces == ("a", "b")
    steps = ControllerSettings.from_env({
        "FT_DEFAULT_RESOURCES": '{"train": {"cpu": "4", "nvidia.com/gpu": 1}}',
        "FT_GPU_TOLERATIONS": '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]',
        "FT_GPU_NODE_SELECTOR": '{"pool": "gpu"}',
        "FT_IMAGE_PULL_SECRETS": "regcred, other",
    })
    assert steps.default_resources.train.gpu == 1 and steps.gpu_tolerations[0].key == "nvidia.com/gpu"
    assert steps.gpu_node_selector == {"pool": "gpu"} and steps.image_pull_secrets == ("regcred", "other")
    with pytest.raises(ValueError):
        ControllerSettings.from_env({"FT_IMAGE_PULL_POLICY": "Sometimes"})
    with pytest.raises(ValueError, match="FT_GPU_NODE_SELECTOR: not valid JSON"):
        ControllerSettings.from_env({"FT_GPU_NODE_SELECTOR": "{pool: gpu"})


def test_rbac_rules_are_justified_and_minimal():
    for rule in FRAMEWORK_RULES + CONTROLLER_RULES:
        assert rule["why"] and "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    rules = {(r["apiGroups"][0], r["resources"][0]): r["verbs"] for r in policy_rules()}
    assert rules == {
        ("", "events"): ["create"],
        ("", "pods"): ["list"],
        ("", "secrets"): ["get"],
        ("", "services"): ["create", "get"],
        ("batch", "jobs"): ["create", "delete", "get", "list", "watch"],
        ("finetune.dev", "finetuneruns"): ["get", "list", "patch", "watch"],
        ("finetune.dev", "finetuneruns/finalizers"): ["update"],
        ("finetune.dev", "finetuneruns/status"): ["patch"],
    }


def test_metrics_count_each_finished_step_once():
    m = Metrics()
    prev = RunStatus(steps=[StepStatus(name="eval", phase="Running")])
    obs = {"eval": Observed(phase="Failed", reason="InvalidData", started="2026-01-01T00:00:00Z", finished="2026-01-01T00:01:30Z")}
    m.step_transitions(prev, obs)
    m.step_transitions(RunStatus(steps=[StepStatus(name="eval", phase="Failed")]), obs)
    assert m.registry.get_sample_value("finetune_job_failures_total", {"step": "eval", "reason": "InvalidData"}) == 1
    assert m.registry.get_sample_value("finetune_step_duration_seconds_sum", {"step": "eval", "phase": "Failed"}) == 90
    runs = {"Running": [("ns", "a"), ("ns", "b")]}
    m.count_runs(runs)
    assert m.registry.get_sample_value("finetune_runs", {"phase": "Running"}) == 2
    runs["Running"].pop()
    assert m.registry.get_sample_value("finetune_runs", {"phase": "Running"}) == 1
    assert m.registry.get_sample_value("finetune_runs", {"phase": "Failed"}) == 0


def test_ftctl_controller_and_cancel_commands(monkeypatch):
    from jobs.cli.main import build_parser

    calls = []
    monkeypatch.setattr("controller.operator.main", lambda **kw: calls.append(kw))
    args = build_parser().parse_args(["controller", "-n", "ml", "-n", "team"])
    assert args.func(args) == 0 and calls == [{"namespaces": ["ml", "team"], "verbose": False}]
    cancel = build_parser().parse_args(["cancel", "run-1", "-n", "ml", "--resume"])
    assert (cancel.run, cancel.namespace, cancel.resume) == ("run-1", "ml", True)


def test_keyed_locks_serialize_per_key_and_are_dropped():
    import asyncio

    from controller.handlers import KeyedLocks

    async def scenario() -> list[str]:
        locks, order = KeyedLocks(), []

        async def work(key: str, tag: str) -> None:
            async with locks.hold(key):
                order.append(f"{tag}+")
                await asyncio.sleep(0.01)
                order.append(f"{tag}-")

        await asyncio.gather(work("a", "1"), work("a", "2"), work("b", "3"))
        assert len(locks) == 0  # nothing kept for keys nobody holds
        return order

    order = asyncio.run(scenario())
    assert order.index("1-") < order.index("2+")  # same key: one after the other
    assert order.index("3+") < order.index("1-")  # other key: meanwhile


def test_api_calls_give_up_on_a_server_that_never_answers():
    import socket
    import time

    import kubernetes.client
    import urllib3

    from controller.kube import Kube

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    previous = kubernetes.client.Configuration.get_default_copy()
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{silent.getsockname()[1]}"
    kubernetes.client.Configuration.set_default(config)
    try:
        kube = Kube(pool_size=1, timeout=(1.0, 0.5))
        started = time.monotonic()
        with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:  # after urllib3's retries
            kube.get_run("ns", "r")
        assert isinstance(raised.value.reason, urllib3.exceptions.ReadTimeoutError)
        assert time.monotonic() - started < 10
    finally:
        kubernetes.client.Configuration.set_default(previous)
        silent.close()


def test_python_m_controller_parses_its_flags_before_it_needs_a_cluster():
    import subprocess
    import sys

    help_ = subprocess.run([sys.executable, "-m", "controller", "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "--namespace" in help_.stdout
    bad = subprocess.run([sys.executable, "-m", "controller", "--nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unrecognized arguments: --nope" in bad.stderr
