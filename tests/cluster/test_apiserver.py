"""The CRD, the chart's RBAC and the controller against a real kube-apiserver (RBAC on, tokens
signed by the server, PodSecurity admission), where the emulator only approximates them."""

from __future__ import annotations

import json
import time

import pytest

from tests.cluster.kit import GROUP, PLURAL, VERSION, a_run, controller, first_job, install_rbac, job_pod, namespace, wait_for

def test_the_crd_schema_is_enforced_at_admission(admin, crd):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ns = namespace(admin)
    api = client.CustomObjectsApi(admin)
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, a_run("good"))
    bad = a_run("bad")
    bad["spec"]["steps"]["pack"]["split"] = {"train": "most"}
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, bad)
    assert err.value.status == 422 and "spec.steps.pack.split.train" in err.value.body


def test_status_is_a_subresource(admin, crd):
    from kubernetes import client

    ns = namespace(admin)
    api = client.CustomObjectsApi(admin)
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, a_run("r"))
    api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "r", {"status": {"phase": "Running"}})
    assert api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "r").get("status", {}).get("phase") is None
    api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "r", {"status": {"phase": "Running"}})
    assert api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "r")["status"]["phase"] == "Running"


def test_the_chart_role_allows_what_the_controller_does_and_nothing_more(control_plane, admin, crd):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ns, other = namespace(admin), namespace(admin)
    sa = control_plane.client(install_rbac(admin, ns))
    runs, core, batch = client.CustomObjectsApi(sa), client.CoreV1Api(sa), client.BatchV1Api(sa)
    runs.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    batch.list_namespaced_job(ns)
    core.list_namespaced_pod(ns)

    def refused(call, *args, **kwargs) -> int:
        with pytest.raises(ApiException) as err:
            call(*args, **kwargs)
        return err.value.status

    assert refused(core.list_namespaced_secret, ns) == 403  # get by name only, never list
    assert refused(runs.list_namespaced_custom_object, GROUP, VERSION, other, PLURAL) == 403
    assert refused(runs.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, a_run("x")) == 403
    assert refused(core.create_namespaced_pod, ns, {"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "x"}]}}) == 403
    assert refused(core.list_namespace) == 403


def test_the_controller_creates_the_first_job_with_the_charts_rights(control_plane, admin, crd, tmp_path):
    """In a namespace that enforces the restricted Pod Security level, the Job's pod template is
    admitted by that level (a server-side dry run of a pod from it)."""
    from kubernetes import client

    ns = namespace(admin)
    with controller(control_plane, admin, ns, tmp_path) as (proc, log):
        runs, batch = client.CustomObjectsApi(admin), client.BatchV1Api(admin)
        run = runs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, a_run("first"))
        job = first_job(batch, ns, proc, log)
        assert [o.uid for o in job.metadata.owner_references] == [run["metadata"]["uid"]]
        # The API server's audit log counts what the controller's ServiceAccount asked for.
        assert control_plane.requests_by(f"system:serviceaccount:{ns}:ft-finetune-operator").get("create jobs") == 1
        status = wait_for("the run's status", lambda: runs.get_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "first").get("status", {}).get("steps"), timeout=60)
        assert any(s.get("job") == job.metadata.name for s in status)
        template = admin.sanitize_for_serialization(job.spec.template)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dry-run"}, "spec": template["spec"]}
        core = client.CoreV1Api(admin)
        # Pods need their ServiceAccount, which the controller-manager makes.
        wait_for("the default ServiceAccount", lambda: core.list_namespaced_service_account(
            ns, field_selector="metadata.name=default").items)
        core.create_namespaced_pod(ns, pod, dry_run="All")  # 403 if PodSecurity refused it
        # The same pod less its security context is refused: the level is really enforced here.
        for container in pod["spec"]["containers"]:
            container.pop("securityContext", None)
        with pytest.raises(client.exceptions.ApiException) as refused:
            core.create_namespaced_pod(ns, pod, dry_run="All")
        assert refused.value.status == 403 and "restricted" in refused.value.body


def test_deleting_a_run_lets_the_garbage_collector_remove_its_jobs_and_pods(control_plane, admin, crd, tmp_path):
    from kubernetes import client

    ns = namespace(admin)
    with controller(control_plane, admin, ns, tmp_path) as (proc, log):
        runs, batch, core = client.CustomObjectsApi(admin), client.BatchV1Api(admin), client.CoreV1Api(admin)
        runs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, a_run("doomed"))
        job = first_job(batch, ns, proc, log)
        pod = job_pod(core, ns, job)
        assert pod.metadata.owner_references[0].uid == job.metadata.uid
        runs.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "doomed",
                                             body={"propagationPolicy": "Background"})
        wait_for("the run to go", lambda: not runs.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"],
                 timeout=60)
        wait_for("the garbage collector to remove the Job and its pod", lambda: not batch.list_namespaced_job(ns).items
                 and not core.list_namespaced_pod(ns).items, timeout=120)


def fail_pod(core, ns: str, pod, exit_code: int, line: dict) -> None:
    """What a kubelet reports for a container that exited: the Job controller takes it from here."""
    container = pod.spec.containers[0]
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {"phase": "Failed", "containerStatuses": [{
        "name": container.name, "image": container.image, "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": "Error", "message": json.dumps(line)}},
    }]}})


def test_a_step_exiting_2_fails_the_job_by_its_pod_failure_policy_and_the_run_names_the_step(
        control_plane, admin, crd, tmp_path):
    from kubernetes import client

    ns = namespace(admin)
    with controller(control_plane, admin, ns, tmp_path) as (proc, log):
        runs, batch, core = client.CustomObjectsApi(admin), client.BatchV1Api(admin), client.CoreV1Api(admin)
        runs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, a_run("bad-data"))
        job = first_job(batch, ns, proc, log)
        pod = job_pod(core, ns, job)
        fail_pod(core, ns, pod, 2, {"type": "error", "step": "pack", "code": "InvalidData",
                                    "message": "data/qa.jsonl line 3: no assistant turn"})
        failed = wait_for("the Job to fail", lambda: [c for c in (batch.read_namespaced_job(
            job.metadata.name, ns).status.conditions or []) if c.type == "Failed" and c.status == "True"], timeout=90)
        assert failed[0].reason == "PodFailurePolicy"  # FailJob at once: no second pod
        assert len(core.list_namespaced_pod(ns).items) == 1
        status = wait_for("the run to fail", lambda: (s := runs.get_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "bad-data").get("status", {})).get("phase") == "Failed" and s, timeout=60)
        assert status["error"]["step"] == "pack" and status["error"]["code"] == "InvalidData"
        assert "line 3" in status["error"]["message"]


def test_a_restarted_controller_adopts_the_running_job_instead_of_creating_another(control_plane, admin, crd, tmp_path):
    import signal

    from kubernetes import client

    ns = namespace(admin)
    runs, batch = client.CustomObjectsApi(admin), client.BatchV1Api(admin)
    (tmp_path / "a").mkdir()
    with controller(control_plane, admin, ns, tmp_path / "a") as (proc, log):
        runs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, a_run("survivor"))
        job = first_job(batch, ns, proc, log)
        proc.send_signal(signal.SIGKILL)  # no shutdown: as when its pod is deleted or its node dies
        proc.wait(timeout=30)
    (tmp_path / "b").mkdir()
    with controller(control_plane, admin, ns, tmp_path / "b") as (proc, log):
        # Debug logging names the run once the new controller has handled it.
        wait_for("the new controller to handle the run", lambda: "survivor" in log.read_text(), timeout=90)
        time.sleep(3)  # and a little longer, for anything it would still create
        assert [j.metadata.uid for j in batch.list_namespaced_job(ns).items] == [job.metadata.uid]
