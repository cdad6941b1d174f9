"""`helm uninstall` leaves nothing of the release behind except what Chart.yaml says it
keeps: the FineTuneRun CRD (crds.keep) and the runs themselves."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.cluster import NAMESPACE, RELEASE, kubectl, kubectl_json, requires_cluster, wait_for

pytestmark = [pytest.mark.e2e, requires_cluster]

KINDS = "deployments,replicasets,pods,services,secrets,configmaps,serviceaccounts,roles,rolebindings,jobs,pvc"
CLUSTER_KINDS = "clusterroles,clusterrolebindings"


def test_uninstall_leaves_only_the_crd() -> None:
    subprocess.run(["helm", "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "3m"], check=True)
    selector = f"app.kubernetes.io/instance={RELEASE}"
    wait_for(
        "the release's objects to be gone",
        lambda: not kubectl("get", KINDS, "-l", selector, "-o", "name").strip(),
        timeout=180,
    )
    assert not kubectl("get", CLUSTER_KINDS, "-l", selector, "-o", "name", namespace=None).strip()
    crd = kubectl_json("get", "crd", "finetuneruns.finetune.dev", namespace=None)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
