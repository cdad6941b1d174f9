"""What the cluster tests share: the CRD, namespaces, a run, the chart's RBAC and the controller
run as the chart runs it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.e2e.cluster import wait_for as e2e_wait_for
from tests.miniokit import free_port

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "finetune.dev_finetuneruns.yaml").read_text())
GROUP, VERSION, PLURAL = "finetune.dev", "v1alpha1", "finetuneruns"


def wait_for(what: str, check, timeout: float = 60):
    return e2e_wait_for(what, check, timeout, interval=0.2)


def namespace(admin, restricted: bool = True) -> str:
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": name, "labels": labels}})
    return name


def a_run(name: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneRun", "metadata": {"name": name},
        "spec": {
            "model": {"hf": "HuggingFaceTB/SmolLM2-135M-Instruct"},
            "data": {"sources": [{"path": "data/qa.jsonl", "format": "openai_chat"}]},
            "steps": {"pack": {"format": "openai_chat"}},
        },
    }



def install_rbac(admin, ns: str) -> str:
    """The chart's ServiceAccount, Role and RoleBinding for a team install in `ns`; returns a
    token the server signs for that ServiceAccount."""
    import helm_python as helm
    from kubernetes import client, utils

    from tests.chart.chartlib import CHART, objects

    with helm.Chart.load(CHART) as chart:
        objs = objects(chart.render({}, name="ft", namespace=ns, is_install=True))
    for obj in objs:
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            try:
                utils.create_from_dict(admin, obj, namespace=ns)
            except utils.FailToCreateError as err:  # installed already: a second controller in `ns`
                if any(e.status != 409 for e in err.api_exceptions):
                    raise
    sa = next(o for o in objs if o["kind"] == "ServiceAccount")["metadata"]["name"]
    token = client.CoreV1Api(admin).create_namespaced_service_account_token(
        sa, ns, {"spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600}})
    return token.status.token



@contextlib.contextmanager
def controller(control_plane, admin, ns: str, tmp_path: Path, **settings: str):
    """`python -m controller` as the chart runs it: its ServiceAccount's token only; `settings`
    are FT_* variables over the defaults (a file store, an image no pod will ever run)."""
    kubeconfig = control_plane.kubeconfig(tmp_path / "controller.kubeconfig", install_rbac(admin, ns))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "FT_NAMESPACES": ns, "FT_METRICS_PORT": "0",
           "FT_LIVENESS": f"http://127.0.0.1:{free_port()}/healthz", "FT_STORE_URI": (tmp_path / "store").as_uri(),
           "FT_IMAGE": "finetune-operator/step:test", **settings}
    log = tmp_path / "controller.log"
    proc = subprocess.Popen([sys.executable, "-m", "controller", "-n", ns, "--verbose"], cwd=ROOT, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        yield proc, log
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def first_job(batch, ns: str, proc, log: Path):
    def found():
        if proc.poll() is not None:
            pytest.fail(f"the controller exited:\n{log.read_text()[-3000:]}")
        return batch.list_namespaced_job(ns).items

    return wait_for("the pack Job", found, timeout=90)[0]


def job_pod(core, ns: str, job):
    """The pod the real Job controller makes (Pending: this cluster has no nodes)."""
    return wait_for("the Job's pod", lambda: core.list_namespaced_pod(
        ns, label_selector=f"batch.kubernetes.io/job-name={job.metadata.name}").items, timeout=90)[0]


