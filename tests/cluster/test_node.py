"""Step pods that really run: the pack image on a kubelet over containerd (tests/cluster/node.py),
its store in MinIO on the pod bridge, the controller with the chart's rights only, in a namespace
that enforces the restricted Pod Security level."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid

import pytest

from jobs.cli.cmd_init import write_sample
from tests.cluster.kit import GROUP, PLURAL, VERSION, a_run, controller, namespace, wait_for

PACK_IMAGE = "finetune-operator/pack:smoke"
STORE_SECRET = "ft-store"


@pytest.fixture(scope="module")
def pack_image(cluster_node) -> str:
    if subprocess.run(["docker", "image", "inspect", PACK_IMAGE], capture_output=True).returncode != 0:
        pytest.fail(f"{PACK_IMAGE} is not built: run `make images-smoke`")
    if not cluster_node.has_image(PACK_IMAGE):
        cluster_node.load_image(PACK_IMAGE)
    return PACK_IMAGE


@pytest.fixture
def team(admin, crd, pod_s3, tmp_path_factory):
    """A restricted namespace with the store's Secret, and a bucket holding the sample QA data."""
    import boto3
    from kubernetes import client

    ns, bucket = namespace(admin), f"ft-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=pod_s3.endpoint, aws_access_key_id=pod_s3.access_key,
                      aws_secret_access_key=pod_s3.secret_key, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    sample = tmp_path_factory.mktemp("sample")
    write_sample(sample)
    s3.upload_file(str(sample / "data" / "qa.jsonl"), bucket, "inputs/qa.jsonl")
    client.CoreV1Api(admin).create_namespaced_secret(ns, {
        "metadata": {"name": STORE_SECRET}, "stringData": pod_s3.env()})
    # The controller reads the store with the Secret's keys, as the chart gives them to its pod.
    return ns, bucket, s3, pod_s3.env()


def pack_run(name: str, bucket: str, data: str) -> dict:
    run = a_run(name)
    run["spec"]["data"]["sources"][0]["path"] = f"s3://{bucket}/{data}"
    run["spec"]["store"] = {"uri": f"s3://{bucket}"}
    return run


def run_status(admin, ns: str, name: str, phases: set[str], timeout: float) -> dict:
    from kubernetes import client

    runs = client.CustomObjectsApi(admin)
    return wait_for(f"run {name} to be {'/'.join(sorted(phases))}", lambda: (s := runs.get_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name).get("status", {})).get("phase") in phases and s, timeout=timeout)


def step_pod(admin, ns: str, run: str, step: str):
    from kubernetes import client

    (pod,) = client.CoreV1Api(admin).list_namespaced_pod(
        ns, label_selector=f"finetune.dev/run={run},finetune.dev/step={step}").items
    return pod


def test_a_pack_pod_runs_on_the_kubelet_and_commits_to_minio(control_plane, admin, cluster_node, pack_image, team,
                                                             tmp_path):
    from kubernetes import client

    ns, bucket, s3, creds = team
    with controller(control_plane, admin, ns, tmp_path, FT_IMAGE_PACK=pack_image, FT_STORE_SECRET=STORE_SECRET,
                    FT_STORE_URI=f"s3://{bucket}", FT_PROGRESS_INTERVAL="1", **creds):
        client.CustomObjectsApi(admin).create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, pack_run("packed", bucket, "inputs/qa.jsonl"))
        status = run_status(admin, ns, "packed", {"Succeeded", "Failed"}, timeout=300)
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)

    pod = step_pod(admin, ns, "packed", "pack")
    assert pod.spec.node_name == cluster_node.name
    (container,) = pod.status.container_statuses
    assert container.state.terminated.exit_code == 0 and container.image_id  # the kubelet ran it
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/{ns}/packed/pack/_manifest.json")["Body"].read())
    train = next(f for f in manifest["files"] if f["path"] == "train.jsonl")
    body = s3.get_object(Bucket=bucket, Key=train["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == train["sha256"] and body.count(b"\n") >= 10


def test_a_pod_exiting_2_fails_the_run_naming_the_step_and_its_error(control_plane, admin, cluster_node, pack_image,
                                                                     team, tmp_path):
    from kubernetes import client

    ns, bucket, _, creds = team
    with controller(control_plane, admin, ns, tmp_path, FT_IMAGE_PACK=pack_image, FT_STORE_SECRET=STORE_SECRET,
                    FT_STORE_URI=f"s3://{bucket}", **creds):
        client.CustomObjectsApi(admin).create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, pack_run("no-data", bucket, "inputs/no-such-file.jsonl"))
        status = run_status(admin, ns, "no-data", {"Succeeded", "Failed"}, timeout=300)
    assert status["phase"] == "Failed" and status["error"]["step"] == "pack", json.dumps(status, indent=1)
    assert "no-such-file.jsonl" in status["error"]["message"]
    job = client.BatchV1Api(admin).read_namespaced_job("no-data-pack", ns)
    assert [c.reason for c in job.status.conditions if c.type == "Failed"] == ["PodFailurePolicy"]
    (container,) = step_pod(admin, ns, "no-data", "pack").status.container_statuses
    terminated = container.state.terminated
    assert terminated.exit_code == 2 and json.loads(terminated.message)["step"] == "pack"


def install_chart(admin, ns: str, values: dict) -> list[dict]:
    """What `helm install` would create in `ns`, less the CRD (the session's own): the chart
    rendered by Helm's engine and created through the API server."""
    import helm_python as helm
    from kubernetes import utils

    from tests.chart.chartlib import CHART, objects

    with helm.Chart.load(CHART) as chart:
        objs = [o for o in objects(chart.render(values, name="ft", namespace=ns, is_install=True))
                if o["kind"] != "CustomResourceDefinition"]
    for obj in objs:
        utils.create_from_dict(admin, obj, namespace=ns)
    return objs


def test_the_chart_installed_runs_its_controller_in_a_pod_that_runs_the_steps(control_plane, admin, cluster_node,
                                                                             pack_image, team):
    """The controller from its image, in a pod with the chart's ServiceAccount and Role only,
    in a restricted namespace; it starts the pack step's Job, whose pod commits to MinIO."""
    from kubernetes import client

    controller_image = "finetune-operator/controller:smoke"
    if not cluster_node.has_image(controller_image):
        cluster_node.load_image(controller_image)
    ns, bucket, s3, _ = team
    port = control_plane.url.rsplit(":", 1)[1]
    install_chart(admin, ns, {
        "crds": {"install": False}, "images": {"tag": "smoke", "pullPolicy": "Never"},
        "store": {"uri": f"s3://{bucket}", "secretName": STORE_SECRET},
        "controller": {"progressIntervalSeconds": 1, "metricsPort": 0,
                       "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                       # No kube-proxy here: the API server's own address instead of the Service's.
                       "extraEnv": [{"name": "KUBERNETES_SERVICE_HOST", "value": control_plane.host},
                                    {"name": "KUBERNETES_SERVICE_PORT", "value": port}]},
        "steps": {"resources": {"pack": {"cpu": "250m", "memory": "1Gi"}}},
    })
    core = client.CoreV1Api(admin)
    pod = wait_for("the controller pod to be ready", lambda: next((p for p in core.list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/component=controller").items
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])), None), timeout=180)
    assert pod.spec.service_account_name == "ft-finetune-operator" and pod.spec.node_name == cluster_node.name

    client.CustomObjectsApi(admin).create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, pack_run("in-cluster", bucket, "inputs/qa.jsonl"))
    status = run_status(admin, ns, "in-cluster", {"Succeeded", "Failed"}, timeout=300)
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    assert s3.head_object(Bucket=bucket, Key=f"runs/{ns}/in-cluster/pack/_manifest.json")["ContentLength"] > 0
    logs = core.read_namespaced_pod_log(pod.metadata.name, ns)  # through the kubelet's API
    assert "in-cluster" in logs and "Traceback" not in logs, logs[-3000:]
