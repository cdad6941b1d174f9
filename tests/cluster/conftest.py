"""The real control plane and node, once per session; see apiserver.py and node.py."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.cluster import apiserver, node
from tests.cluster.kit import CRD, wait_for
from tests.miniokit import minio_binary, start_minio


def _missing(what: str, hint: str) -> None:
    if os.environ.get("FT_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"FT_REQUIRE_CLUSTER=1 but {what}: {hint}")
    pytest.skip(f"{what} ({hint})")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    found = apiserver.binaries()
    if found is None:
        _missing("etcd and kube-apiserver are not built", "`make cluster-bin` builds them from Go modules")
    # On the pod bridge when this machine lets us make it (root), so that pods reach the API server.
    host = node.BRIDGE_IP if node.try_bridge() else "127.0.0.1"
    plane = apiserver.start(tmp_path_factory.mktemp("control-plane"), *found, host=host)
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def admin(control_plane):
    return control_plane.client()


@pytest.fixture(scope="session")
def crd(admin):
    from kubernetes import client

    ext = client.ApiextensionsV1Api(admin)
    ext.create_custom_resource_definition(CRD)

    def established():
        conds = ext.read_custom_resource_definition(CRD["metadata"]["name"]).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_for("the CRD to be established", established)
    return CRD


@pytest.fixture(scope="session")
def cluster_node(control_plane):
    """kube-scheduler and a kubelet over containerd: pods run for real."""
    found = node.binaries()
    if found is None:
        _missing("kube-scheduler/kubelet are not built or containerd, runc, the CNI plugins are not installed",
                 "`make cluster-bin`; apt-get install docker.io containernetworking-plugins")
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        _missing("no Docker engine answers", "the node's images come from it (`make images-smoke`)")
    if control_plane.host != node.BRIDGE_IP:
        _missing("the pod bridge could not be made", "making a bridge needs root")
    started = node.start_node(control_plane, *found)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def pod_s3(cluster_node, tmp_path_factory):
    """MinIO on the pod bridge's address, where both pods and the host reach it."""
    binary = minio_binary()
    if binary is None:
        _missing("no minio binary", "`make minio`")
    root = tmp_path_factory.mktemp("pod-minio")
    server, proc = start_minio(binary, root, root / "minio.log", host=cluster_node.address)
    yield server
    proc.terminate()
    proc.wait(timeout=10)
