"""A train step over two pods against the real control plane: the Service and the Indexed Job the
Job builder makes are accepted under the chart's Role, owned by the run, and the real Job
controller makes one pod per index with the host name and subdomain the rendezvous address names,
admitted by the restricted Pod Security level."""

from __future__ import annotations

import kopf

from controller.jobs import build_job, build_service
from controller.settings import ControllerSettings
from jobs.common.names import STEP_ORDER
from jobs.common.specio import run_from_obj
from tests.cluster.kit import GROUP, PLURAL, VERSION, a_run, install_rbac, namespace, wait_for


def two_node_run(ns: str) -> dict:
    body = a_run("wide")
    body["metadata"]["namespace"] = ns
    body["spec"]["steps"]["train"] = {"distributed": {"nodes": 2, "procsPerNode": 2, "strategy": "fsdp"}}
    body["spec"]["resources"] = {"train": {"nvidia.com/gpu": 2}}
    body["spec"]["job"] = {"terminationGracePeriodSeconds": 120}
    return body


def test_the_indexed_job_and_its_service_are_admitted_under_the_charts_role(control_plane, admin, crd):
    from kubernetes import client

    ns = namespace(admin)
    owner = client.CustomObjectsApi(admin).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, two_node_run(ns))
    run = run_from_obj({k: owner[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": "wide", "namespace": ns}})
    settings = ControllerSettings(namespaces=(ns,), default_store_uri="s3://bucket/team",
                                  images={s: "finetune-operator/step:test" for s in STEP_ORDER})
    job, service = build_job(run, "train", settings), build_service(run)
    kopf.adopt(job, owner=owner)  # as the controller does: blockOwnerDeletion needs the finalizers rule
    kopf.adopt(service, owner=owner)

    sa = control_plane.client(install_rbac(admin, ns))
    core, batch = client.CoreV1Api(sa), client.BatchV1Api(admin)
    created = core.create_namespaced_service(ns, service)
    assert created.spec.cluster_ip == "None" and created.metadata.owner_references[0].uid == owner["metadata"]["uid"]
    assert core.read_namespaced_service("wide-train", ns).spec.publish_not_ready_addresses is True
    # Through CustomObjectsApi with the plain dict, as controller/kube.py creates Jobs.
    client.CustomObjectsApi(sa).create_namespaced_custom_object("batch", "v1", ns, "jobs", job)

    # The real Job controller: one pod per index, named for the rendezvous address.
    admin_core = client.CoreV1Api(admin)
    pods = wait_for("both pods", lambda: (lambda items: items if len(items) == 2 else None)(
        admin_core.list_namespaced_pod(ns, label_selector="batch.kubernetes.io/job-name=wide-train").items), timeout=90)
    hosts = sorted((p.spec.hostname, p.spec.subdomain) for p in pods)
    assert hosts == [("wide-train-0", "wide-train"), ("wide-train-1", "wide-train")]
    env = {e.name: e for e in pods[0].spec.containers[0].env}
    assert env["MASTER_ADDR"].value == "wide-train-0.wide-train" and env["MASTER_PORT"].value == "29500"
    assert "JOB_COMPLETION_INDEX" in env  # the node rank, set by the Job controller
    assert pods[0].spec.termination_grace_period_seconds == 120

    # The pods themselves pass the namespace's restricted level (their ServiceAccount exists by now).
    stored = batch.read_namespaced_job("wide-train", ns)
    assert (stored.spec.completion_mode, stored.spec.completions, stored.spec.backoff_limit_per_index) == ("Indexed", 2, 2)
    template = admin.sanitize_for_serialization(stored.spec.template)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dry-run"}, "spec": template["spec"]}
    admin_core.create_namespaced_pod(ns, pod, dry_run="All")
