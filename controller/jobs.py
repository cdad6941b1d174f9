"""The Job builder: one batch/v1 Job per step, as a plain dict. Pure: no API calls.

The spec reaches the step as the env var FT_SPEC (its JSON snapshot) rather than a
ConfigMap: the Job then carries everything it runs with, there is no second object to
create before it, to garbage-collect or to grant RBAC for, and a spec is a few KB, far
below what an environment holds. The spec holds no secret values (only Secret names),
so showing it in `kubectl describe pod` leaks nothing.

Credentials reach the pod only as `secretKeyRef` envs; the command is exec-form
(`python -m jobs.<step>`), so no user string is ever parsed by a shell.
"""

from __future__ import annotations

import json
from typing import Any

from controller.settings import ControllerSettings
from jobs.common.errors import EXIT_PREEMPTED, PERMANENT_EXIT_CODES
from jobs.common.names import LABEL_QUEUE, LABEL_RUN, LABEL_STEP
from jobs.common.spec import Distributed, FineTuneRun, SecretKeyRef, StepResources

SCRATCH = "/scratch"
MANAGED_BY = {"app.kubernetes.io/managed-by": "finetune-operator"}
# Keys of the store Secret: (env var = key, required). Endpoint and region are optional,
# since AWS S3 needs neither.
STORE_SECRET_KEYS = (
    ("AWS_ACCESS_KEY_ID", True),
    ("AWS_SECRET_ACCESS_KEY", True),
    ("AWS_ENDPOINT_URL", False),
    ("AWS_REGION", False),
)
# Steps that log to W&B and so get its key; the others never see it.
WANDB_STEPS = ("train",)
# Steps that save a checkpoint on SIGTERM and exit EXIT_PREEMPTED; their next pod resumes from it.
PREEMPTIBLE_STEPS = ("train",)


def job_name(run: str, step: str) -> str:
    return f"{run}-{step}"


def rendezvous_service(run: str) -> str:
    """The headless Service that gives a multi-pod train step's pods their DNS names."""
    return job_name(run, "train")


def distributed(run: FineTuneRun, step: str) -> Distributed | None:
    """The step's process layout: the train step's, None for the single-process steps."""
    return run.spec.steps.train.distributed if step == "train" and run.spec.steps.train else None


def _rendezvous_env(run: str, dist: Distributed) -> list[dict[str, Any]]:
    # Pod 0 of an Indexed Job is `<job>-0`, and its subdomain makes it `<job>-0.<service>`; the node
    # rank is the JOB_COMPLETION_INDEX the Job controller sets. One pod rendezvouses on loopback.
    master = f"{job_name(run, 'train')}-0.{rendezvous_service(run)}" if dist.nodes > 1 else "127.0.0.1"
    return [{"name": "MASTER_ADDR", "value": master}, {"name": "MASTER_PORT", "value": str(dist.port)}]


def store_uri(run: FineTuneRun, settings: ControllerSettings) -> str | None:
    return run.spec.store.uri or settings.default_store_uri


def store_secret(run: FineTuneRun, settings: ControllerSettings) -> str | None:
    return run.spec.store.secret_ref or settings.default_store_secret


def queue_name(run: FineTuneRun, settings: ControllerSettings) -> str | None:
    return run.spec.queue or settings.default_queue


def _secret_env(env: str, name: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": env, "valueFrom": {"secretKeyRef": ref}}


def _credential_envs(run: FineTuneRun, step: str, settings: ControllerSettings) -> list[dict[str, Any]]:
    envs = []
    secret = store_secret(run, settings)
    uri = store_uri(run, settings) or ""
    if secret and uri.startswith("s3://"):
        envs += [_secret_env(key, secret, key, optional=not required) for key, required in STORE_SECRET_KEYS]
    wandb = run.spec.tracking.wandb
    if step in WANDB_STEPS and wandb and wandb.api_key_secret:
        envs.append(_secret_env("WANDB_API_KEY", wandb.api_key_secret.name, wandb.api_key_secret.key))
    # The eval step's endpoint and a judge read their key from an env var named like the Secret's key.
    refs: list[SecretKeyRef] = []
    endpoint = run.spec.steps.eval.backend.endpoint if run.spec.steps.eval else None
    if step == "eval" and endpoint and endpoint.api_key_secret:
        refs.append(endpoint.api_key_secret)
    refs += judge_key_refs(run, step)
    for ref in dict.fromkeys(refs):  # the endpoint and the judge may share one key
        envs.append(_secret_env(ref.key, ref.name, ref.key))
    return envs


def judge_key_refs(run: FineTuneRun, step: str) -> list[SecretKeyRef]:
    """The judge's key for each step that grades judge checks: eval and evaluate with their own
    judge, and gguf, which scores the quantizations with evaluate's checks and judge."""
    cfg = getattr(run.spec.steps, "evaluate" if step == "gguf" else step, None)
    judge = getattr(cfg, "judge", None) if step in ("eval", "evaluate", "gguf") else None
    endpoint = judge.backend.endpoint if judge else None
    return [endpoint.api_key_secret] if endpoint and endpoint.api_key_secret else []


def step_resources(run: FineTuneRun, step: str, settings: ControllerSettings) -> StepResources | None:
    """The run's resources for `step`, each unset field taken from the controller's defaults."""
    own, default = getattr(run.spec.resources, step), getattr(settings.default_resources, step)
    if own is None or default is None:
        return own or default
    return StepResources(**{f: getattr(own, f) if getattr(own, f) is not None else getattr(default, f)
                            for f in StepResources.model_fields})


def _resources(res: StepResources | None) -> dict[str, Any]:
    if res is None:
        return {}
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if res.cpu:
        requests["cpu"] = res.cpu  # no CPU limit: throttling only slows a step down
    if res.memory:
        requests["memory"] = limits["memory"] = res.memory
    if res.gpu:
        limits["nvidia.com/gpu"] = res.gpu
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _pod_failure_policy(step: str) -> dict[str, Any]:
    # A node drain or preemption is nobody's fault: retry without counting it.
    rules: list[dict[str, Any]] = [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    if step in PREEMPTIBLE_STEPS:
        # SIGTERM without a DisruptionTarget condition (a spot node going away): the step saved a
        # checkpoint and said so with its exit code; the next pod resumes from it.
        rules.append({"action": "Ignore", "onExitCodes": {"containerName": step, "operator": "In", "values": [EXIT_PREEMPTED]}})
    # Bad input, corrupt store, unmet gate: another attempt would fail the same way.
    rules.append({
        "action": "FailJob",
        "onExitCodes": {"containerName": step, "operator": "In", "values": sorted(PERMANENT_EXIT_CODES)},
    })
    return {"rules": rules}


def build_job(run: FineTuneRun, step: str, settings: ControllerSettings) -> dict[str, Any]:
    """The Job that runs `step` of `run`. Owner references are added by the caller."""
    name, namespace = run.metadata.name, run.metadata.namespace
    spec = run.spec
    resources = step_resources(run, step, settings)
    gpu = bool(resources and resources.gpu)
    labels = {LABEL_RUN: name, LABEL_STEP: step, **MANAGED_BY}
    job_labels = dict(labels)
    queue = queue_name(run, settings)
    if queue:
        job_labels[LABEL_QUEUE] = queue
    env = [
        {"name": "FT_SPEC", "value": json.dumps(run.snapshot(), sort_keys=True, separators=(",", ":"))},
        {"name": "FT_STORE_URI", "value": store_uri(run, settings) or ""},
        {"name": "FT_PROGRESS_TO_STORE", "value": "1"},
        {"name": "FT_SCRATCH", "value": SCRATCH},
        # The root filesystem is read-only: libraries that write under $HOME get /tmp.
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        *_credential_envs(run, step, settings),
    ]
    dist = distributed(run, step)
    if dist is not None:
        env += _rendezvous_env(name, dist)
    container = {
        "name": step,
        "image": settings.images[step],
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", f"jobs.{step}"],
        "env": env,
        "resources": _resources(resources),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "scratch", "mountPath": SCRATCH}],
        # A failed step's last log lines (its JSON error line) become the termination message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    scratch: dict[str, Any] = {"sizeLimit": settings.scratch_size} if settings.scratch_size else {}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "scratch", "emptyDir": scratch}],
    }
    if spec.job.termination_grace_period_seconds is not None:
        pod_spec["terminationGracePeriodSeconds"] = spec.job.termination_grace_period_seconds
    if settings.step_service_account:
        pod_spec["serviceAccountName"] = settings.step_service_account
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in settings.image_pull_secrets]
    # GPU steps also get the controller's GPU scheduling defaults; the run's own win.
    node_selector = {**(settings.gpu_node_selector if gpu else {}), **spec.scheduling.node_selector}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = []
    for t in [*spec.scheduling.tolerations, *(settings.gpu_tolerations if gpu else ())]:
        dumped = t.model_dump(mode="json", by_alias=True, exclude_none=True)
        if dumped not in tolerations:
            tolerations.append(dumped)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.job.backoff_limit,
        "podFailurePolicy": _pod_failure_policy(step),
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if dist is not None and dist.nodes > 1:
        # One pod per node, all at once; the pod of index i is reachable as `<job>-i.<service>`.
        # The retry budget is per index and no index may use it up (maxFailedIndexes 0): one fault
        # of the run fails every pod once (their collectives break), which costs each index one
        # retry rather than `nodes` retries of a shared backoffLimit.
        pod_spec["subdomain"] = rendezvous_service(name)
        job_spec.pop("backoffLimit")
        job_spec.update(completionMode="Indexed", completions=dist.nodes, parallelism=dist.nodes,
                        backoffLimitPerIndex=spec.job.backoff_limit, maxFailedIndexes=0)
    if spec.job.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.job.active_deadline_seconds
    if spec.job.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.job.ttl_seconds_after_finished
    if queue:
        job_spec["suspend"] = True  # Kueue unsuspends the Job when it admits it
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(name, step), "namespace": namespace, "labels": job_labels},
        "spec": job_spec,
    }


def build_service(run: FineTuneRun) -> dict[str, Any] | None:
    """The headless Service of a train step over several pods (None otherwise). Its pods get DNS
    names while not yet ready, since ranks rendezvous before any readiness could be reported.
    Owner references are added by the caller."""
    dist = distributed(run, "train")
    if dist is None or dist.nodes == 1:
        return None
    name, namespace = run.metadata.name, run.metadata.namespace
    labels = {LABEL_RUN: name, LABEL_STEP: "train", **MANAGED_BY}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": rendezvous_service(name), "namespace": namespace, "labels": labels},
        "spec": {
            "clusterIP": "None",
            "selector": {LABEL_RUN: name, LABEL_STEP: "train"},
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": dist.port, "targetPort": dist.port, "protocol": "TCP"}],
        },
    }


def required_secrets(job: dict[str, Any]) -> list[tuple[str, str]]:
    """(Secret, key) pairs the Job's pods cannot start without, in order, without repeats."""
    out: list[tuple[str, str]] = []
    for container in job["spec"]["template"]["spec"]["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional") and (ref["name"], ref["key"]) not in out:
                out.append((ref["name"], ref["key"]))
    return out
