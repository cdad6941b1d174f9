"""`ftctl serve --backend cluster` against the real kube-apiserver, with the chart's API Role only
and the real controller: through the openai client, a job becomes a FineTuneRun in the key's
namespace, follows the controller's status, and a cancel suspends the run, which ends Cancelled."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cluster.kit import GROUP, PLURAL, ROOT, VERSION, a_run, controller, namespace, wait_for
from tests.miniokit import free_port

KEY = "sk-cluster-tenant-0123456789"


def install_api_rbac(admin, ns: str) -> str:
    """The chart's API ServiceAccount, Role and RoleBinding for tenant `ns`; a token for it."""
    import helm_python as helm
    from kubernetes import client, utils

    from tests.chart.chartlib import CHART, objects

    values = {"api": {"enabled": True, "keysSecret": "keys", "namespaces": [ns]}}
    with helm.Chart.load(CHART) as chart:
        objs = objects(chart.render(values, name="ft", namespace=ns, is_install=True))
    api = [o for o in objs if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "api"]
    for obj in api:
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            utils.create_from_dict(admin, obj, namespace=ns)
    sa = next(o for o in api if o["kind"] == "ServiceAccount")["metadata"]["name"]
    token = client.CoreV1Api(admin).create_namespaced_service_account_token(
        sa, ns, {"spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600}})
    return token.status.token


@contextlib.contextmanager
def api_server(control_plane, admin, ns: str, tmp_path: Path):
    """The server as the chart runs it (its ServiceAccount's token only); its /v1 URL."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    template = {"models": {"tiny": {"hf": str(model)}},
                "spec": {"steps": {"pack": {"format": "openai_chat"}, "train": {"method": "sft", "maxSteps": 2}}}}
    (tmp_path / "template.yaml").write_text(yaml.safe_dump(template))
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump({KEY: ns}))
    kubeconfig = control_plane.kubeconfig(tmp_path / "api.kubeconfig", install_api_rbac(admin, ns))
    port = free_port()
    log = tmp_path / "api.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli.main", "serve", "--backend", "cluster", "--keys", str(tmp_path / "keys.yaml"),
         "--template", str(tmp_path / "template.yaml"), "--store", (tmp_path / "store").as_uri(),
         "--work-dir", str(tmp_path / "api-work"), "--port", str(port)],
        cwd=ROOT, env={**os.environ, "KUBECONFIG": str(kubeconfig)}, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        import httpx

        def up():
            if proc.poll() is not None:
                pytest.fail(f"ftctl serve exited:\n{log.read_text()[-3000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
            except httpx.TransportError:
                return False

        wait_for("the API server", up, timeout=60)
        yield f"http://127.0.0.1:{port}/v1"
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
        assert KEY not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def chat_file() -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}, as counting shows."}]}
            for i in range(12)]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def test_a_job_is_a_finetunerun_the_controller_runs_and_a_cancel_suspends_it(control_plane, admin, crd, tmp_path):
    import openai
    from kubernetes import client

    ns = namespace(admin)
    runs = client.CustomObjectsApi(admin)
    with controller(control_plane, admin, ns, tmp_path), \
            api_server(control_plane, admin, ns, tmp_path) as base:
        api = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
        f = api.files.create(file=("train.jsonl", io.BytesIO(chat_file())), purpose="fine-tune")
        job = api.fine_tuning.jobs.create(training_file=f.id, model="tiny", hyperparameters={"n_epochs": 2})

        run = runs.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job.id)  # `kubectl get ftr <job id>`
        assert run["metadata"]["labels"]["finetune.dev/api-job"] == job.id
        assert run["spec"]["data"]["sources"][0]["path"].endswith(f"/api/{ns}/files/{f.id}/{f.id}.jsonl")
        assert run["spec"]["steps"]["train"]["epochs"] == 2

        # The controller starts the pack Job (its pod stays Pending here): the job reads running.
        running = wait_for("the job to run", lambda: api.fine_tuning.jobs.retrieve(job.id).status == "running", 180)
        assert running
        events = [e.message for e in api.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert "Step pack started" in events and "Fine-tuning job started" in events

        api.fine_tuning.jobs.cancel(job.id)
        assert runs.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job.id)["spec"]["suspend"] is True
        wait_for("the job to be cancelled", lambda: api.fine_tuning.jobs.retrieve(job.id).status == "cancelled", 90)
        status = runs.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job.id)["status"]
        assert status["phase"] == "Cancelled"  # the same run, read by kubectl and by the API


def test_the_api_role_allows_its_calls_and_nothing_more(control_plane, admin, crd):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ns, other = namespace(admin), namespace(admin)
    api = control_plane.client(install_api_rbac(admin, ns))
    runs, core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    runs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, a_run("by-api"))
    runs.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "by-api")
    runs.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "by-api", {"spec": {"suspend": True}})

    def refused(call, *args) -> int:
        with pytest.raises(ApiException) as err:
            call(*args)
        return err.value.status

    assert refused(runs.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL) == 403
    assert refused(runs.delete_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, "by-api") == 403
    assert refused(runs.patch_namespaced_custom_object_status, GROUP, VERSION, ns, PLURAL, "by-api", {"status": {}}) == 403
    assert refused(runs.create_namespaced_custom_object, GROUP, VERSION, other, PLURAL, a_run("elsewhere")) == 403
    assert refused(core.list_namespaced_secret, ns) == 403
    assert refused(client.BatchV1Api(api).list_namespaced_job, ns) == 403
