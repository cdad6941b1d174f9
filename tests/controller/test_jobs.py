"""The Job builder, pure: every built Job is valid for the Kubernetes versions we support
(1.31, where podFailurePolicy went GA, up to 1.37, the newest schemas kubernetes-validate
ships), checked strictly (no unknown fields)."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from controller.jobs import build_job, job_name, required_secrets
from controller.settings import ControllerSettings
from jobs.common.names import STEP_ORDER
from jobs.common.spec import MAX_RUN_NAME, FineTuneRun, Resources, Toleration
from jobs.common.specio import load_run

K8S_VERSIONS = ["1.31", "1.32", "1.33", "1.34", "1.35", "1.36", "1.37"]
SETTINGS = ControllerSettings(
    namespaces=("ml",),
    default_store_uri="s3://ft-artifacts/prod",
    default_store_secret="s3-creds",
    images={s: f"registry.example/ft-{s}:1.2.3" for s in STEP_ORDER},
    scratch_size="200Gi",
)
SHELLISH = "$(rm -rf /); `reboot` && echo 'x' | sh"


def run(**spec_overrides) -> FineTuneRun:
    spec = {
        "model": {"hf": "s3://models/tiny"},
        "data": {"sources": [{"path": "s3://data/train.jsonl", "format": "openai_chat"}]},
        "steps": {
            "eval": {
                "items": "s3://data/items.jsonl",
                "backend": {"endpoint": {"baseUrl": "https://llm.example.com/v1", "model": "m",
                                         "apiKeySecret": {"name": "llm-key", "key": "OPENAI_API_KEY"}}},
            },
            "pack": {"systemPrompt": SHELLISH},
            "train": {"maxSteps": 10},
            "evaluate": {"gate": "tunedPassRate >= basePassRate"},
            "gguf": {"quantizations": ["Q4_K_M"]},
        },
        "resources": {"train": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": 2}},
        "scheduling": {
            "nodeSelector": {"gpu": "a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "tracking": {"wandb": {"project": "ft", "apiKeySecret": {"name": "wandb", "key": "apiKey"}}},
        "job": {"backoffLimit": 3, "activeDeadlineSeconds": 7200, "ttlSecondsAfterFinished": 600},
        "queue": "gpu-queue",
    }
    spec.update(spec_overrides)
    return FineTuneRun.model_validate(
        {"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun", "metadata": {"name": "demo", "namespace": "ml"}, "spec": spec}
    )


def env_of(job: dict) -> dict[str, dict]:
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("step", STEP_ORDER)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_job_validates_against_upstream_schemas(step, version):
    kubernetes_validate.validate(build_job(run(), step, SETTINGS), version, strict=True)


def test_minimal_job_validates_too():
    minimal = run(resources={}, scheduling={}, tracking={}, job={}, queue=None)
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(build_job(minimal, "pack", SETTINGS), version, strict=True)


def test_job_identity_image_and_command():
    job = build_job(run(), "train", SETTINGS)
    assert job["metadata"]["name"] == "demo-train" and job["metadata"]["namespace"] == "ml"
    labels = job["metadata"]["labels"]
    assert labels["finetune.dev/run"] == "demo" and labels["finetune.dev/step"] == "train"
    assert job["spec"]["template"]["metadata"]["labels"]["finetune.dev/step"] == "train"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/ft-train:1.2.3"
    assert container["command"] == ["python", "-m", "jobs.train"] and "args" not in container


def test_spec_travels_as_json_env_and_no_user_string_reaches_a_command():
    job = build_job(run(), "pack", SETTINGS)
    env = env_of(job)
    snapshot = load_run(None, text=env["FT_SPEC"]["value"])
    assert snapshot == run()  # the step harness reads back exactly the run
    assert env["FT_STORE_URI"]["value"] == "s3://ft-artifacts/prod"
    assert env["FT_PROGRESS_TO_STORE"]["value"] == "1"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert SHELLISH not in json.dumps(container["command"]) and "sh" not in container["command"]
    assert all(SHELLISH not in e.get("value", "") for name, e in env.items() if name != "FT_SPEC")


def test_resources_and_scheduling_come_from_the_spec():
    train = build_job(run(), "train", SETTINGS)["spec"]["template"]["spec"]
    assert train["containers"][0]["resources"] == {
        "requests": {"cpu": "8", "memory": "64Gi"},
        "limits": {"memory": "64Gi", "nvidia.com/gpu": 2},
    }
    assert train["nodeSelector"] == {"gpu": "a100"}
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert build_job(run(), "pack", SETTINGS)["spec"]["template"]["spec"]["containers"][0]["resources"] == {}


def test_credentials_only_by_secret_reference_and_only_where_needed():
    for step in STEP_ORDER:
        env = env_of(build_job(run(), step, SETTINGS))
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}
        assert env["AWS_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
        assert ("WANDB_API_KEY" in env) == (step == "train")
        assert ("OPENAI_API_KEY" in env) == (step == "eval")
        assert all("value" not in e for n, e in env.items() if n.startswith(("AWS_", "WANDB", "OPENAI")))
    eval_job = build_job(run(), "eval", SETTINGS)
    assert required_secrets(eval_job) == [
        ("s3-creds", "AWS_ACCESS_KEY_ID"), ("s3-creds", "AWS_SECRET_ACCESS_KEY"), ("llm-key", "OPENAI_API_KEY")
    ]
    # A run's own store Secret wins over the controller's default; a file:// store needs none.
    own = build_job(run(store={"uri": "s3://other/p", "secretRef": "team-s3"}), "pack", SETTINGS)
    assert required_secrets(own) == [("team-s3", "AWS_ACCESS_KEY_ID"), ("team-s3", "AWS_SECRET_ACCESS_KEY")]
    local = build_job(run(store={"uri": "file:///mnt/store"}), "pack", SETTINGS)
    assert required_secrets(local) == [] and env_of(local)["FT_STORE_URI"]["value"] == "file:///mnt/store"


def test_job_policy_and_pod_failure_policy():
    spec = build_job(run(), "gguf", SETTINGS)["spec"]
    assert spec["backoffLimit"] == 3 and spec["activeDeadlineSeconds"] == 7200 and spec["ttlSecondsAfterFinished"] == 600
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "gguf", "operator": "In", "values": [2, 3, 4]}},
    ]


def test_kueue_queue_suspends_the_job():
    job = build_job(run(), "eval", SETTINGS)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue" and job["spec"]["suspend"] is True
    plain = build_job(run(queue=None), "eval", SETTINGS)
    assert "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"] and "suspend" not in plain["spec"]
    defaulted = build_job(run(queue=None), "eval", SETTINGS.model_copy(update={"default_queue": "shared"}))
    assert defaulted["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "shared"


def test_restricted_security_context():
    pod = build_job(run(), "train", SETTINGS)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc == {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "capabilities": {"drop": ["ALL"]}}
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts == {"/tmp", "/scratch"}
    assert {"name": "scratch", "emptyDir": {"sizeLimit": "200Gi"}} in pod["volumes"]


def test_controller_defaults_for_steps():
    defaults = SETTINGS.model_copy(update={
        "default_resources": Resources.model_validate(
            {"train": {"cpu": "4", "memory": "48Gi", "nvidia.com/gpu": 1}, "evaluate": {"cpu": "2", "nvidia.com/gpu": 1}}),
        "gpu_tolerations": (Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),),
        "gpu_node_selector": {"gpu": "any", "pool": "gpu"},
        "image_pull_secrets": ("regcred",),
    })
    plain = run(resources={"evaluate": {"nvidia.com/gpu": 0}}, scheduling={})
    # The run's own fields win; unset ones come from the defaults.
    train = build_job(run(resources={"train": {"memory": "16Gi"}}, scheduling={}), "train", defaults)["spec"]["template"]["spec"]
    assert train["containers"][0]["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi", "nvidia.com/gpu": 1}}
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert train["nodeSelector"] == {"gpu": "any", "pool": "gpu"} and train["imagePullSecrets"] == [{"name": "regcred"}]
    # nvidia.com/gpu: 0 turns the default GPU off, and with it the GPU scheduling.
    evaluate = build_job(plain, "evaluate", defaults)["spec"]["template"]["spec"]
    assert evaluate["containers"][0]["resources"] == {"requests": {"cpu": "2"}}
    assert "tolerations" not in evaluate and "nodeSelector" not in evaluate
    # A run's own node selector wins key by key; its tolerations come first, without repeats.
    own = run()  # nodeSelector gpu: a100, the same GPU toleration
    mixed = build_job(own, "train", defaults)["spec"]["template"]["spec"]
    assert mixed["nodeSelector"] == {"gpu": "a100", "pool": "gpu"} and len(mixed["tolerations"]) == 1
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(build_job(own, "train", defaults), version, strict=True)


def test_longest_run_name_gives_a_valid_job_name():
    name = "r" * MAX_RUN_NAME
    assert max(len(job_name(name, s)) for s in STEP_ORDER) <= 63


def test_the_schema_check_is_not_vacuous():
    job = build_job(run(), "train", SETTINGS)
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["dropAll"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.33", strict=True)


def test_a_judge_gets_its_key_by_secret_reference_in_the_steps_that_grade():
    judge = {"backend": {"endpoint": {"baseUrl": "https://judge.example.com/v1", "model": "j",
                                      "apiKeySecret": {"name": "judge-key", "key": "JUDGE_API_KEY"}}}}
    checks = [{"type": "judge", "rubric": "answers politely"}]
    base = run()
    steps = base.spec.steps.model_dump(mode="json", by_alias=True, exclude_none=True)
    steps["evaluate"] |= {"checks": checks, "judge": judge}
    steps["eval"] |= {"judge": judge}
    judged = run(steps=steps)
    for step in STEP_ORDER:
        env = env_of(build_job(judged, step, SETTINGS))
        assert ("JUDGE_API_KEY" in env) == (step in ("eval", "evaluate", "gguf")), step
        if "JUDGE_API_KEY" in env:
            assert env["JUDGE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "judge-key", "key": "JUDGE_API_KEY"}
    assert ("judge-key", "JUDGE_API_KEY") in required_secrets(build_job(judged, "evaluate", SETTINGS))
