"""The exact API access the controller needs, each verb with the reason it is needed.

Split as kopf's own needs (watching, its bookkeeping, Events) and the controller's
(controller/kube.py). The Helm chart's Role is checked against `policy_rules()`, and
tests check that every request the controller makes is allowed here.
"""

from __future__ import annotations

from typing import Any

from jobs.common.names import GROUP, PLURAL

FRAMEWORK_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [GROUP],
        "resources": [PLURAL],
        "verbs": ["list", "watch"],
        "why": "kopf lists and watches FineTuneRuns to call the handlers",
    },
    {
        "apiGroups": [GROUP],
        "resources": [PLURAL],
        "verbs": ["patch"],
        "why": "kopf keeps its handler progress in annotations and adds/removes its finalizer "
        "(only on runs with spec.cleanup: deleteArtifacts)",
    },
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["list", "watch"],
        "why": "kopf lists and watches step Jobs (label finetune.dev/run) for the Job index and events",
    },
    {
        "apiGroups": [""],
        "resources": ["events"],
        "verbs": ["create"],
        "why": "kopf posts warnings and errors of handlers as Events on the run",
    },
]

CONTROLLER_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [GROUP],
        "resources": [PLURAL],
        "verbs": ["get"],
        "why": "each reconcile reads the run fresh, under its lock",
    },
    {
        "apiGroups": [GROUP],
        "resources": [PLURAL],
        "verbs": ["patch"],
        "why": "the spec snapshot annotation is written when a run starts",
    },
    {
        "apiGroups": [GROUP],
        "resources": [f"{PLURAL}/status"],
        "verbs": ["patch"],
        "why": "the run's status (phase, steps, conditions, artifacts) is written when it changes",
    },
    {
        "apiGroups": [GROUP],
        "resources": [f"{PLURAL}/finalizers"],
        "verbs": ["update"],
        "why": "Jobs carry an owner reference with blockOwnerDeletion, which clusters with "
        "OwnerReferencesPermissionEnforcement allow only to who may update the owner's finalizers",
    },
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["create"],
        "why": "one Job per step, created if absent",
    },
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["get"],
        "why": "on a Job name conflict, tell a Job of this run from an earlier run's or a foreign one",
    },
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["delete"],
        "why": "cancelling a run (spec.suspend) deletes its running step's Job",
    },
    {
        "apiGroups": [""],
        "resources": ["services"],
        "verbs": ["create"],
        "why": "a train step over several pods gets a headless Service, created before its Job, "
        "through which its pods reach the rendezvous master",
    },
    {
        "apiGroups": [""],
        "resources": ["services"],
        "verbs": ["get"],
        "why": "on a Service name conflict, tell this run's Service from an earlier run's or a foreign one",
    },
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["list"],
        "why": "the termination message of a failed step's pod holds the step's error",
    },
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "why": "before a Job is created, the Secrets and keys it references are checked to exist "
        "(only key names are looked at; values are never logged or stored)",
    },
]

RULES: list[dict[str, Any]] = FRAMEWORK_RULES + CONTROLLER_RULES


def policy_rules() -> list[dict[str, list[str]]]:
    """RULES as Kubernetes PolicyRules: one per (apiGroup, resource), verbs sorted."""
    merged: dict[tuple[str, str], set[str]] = {}
    for rule in RULES:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                merged.setdefault((group, resource), set()).update(rule["verbs"])
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(merged.items())
    ]


def allows(group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in RULES
    )
