"""The controller against kmock's KubernetesEmulator, with the test as the Job controller.

The emulator keeps objects in memory and serves them over HTTP with watch streams,
but it does not filter by label selector, has no status subresource (a status patch
is a plain merge), sets no uid, resourceVersion or creationTimestamp, and runs no
garbage collector and no Job controller. `Emulator` below adds resourceVersions and their
use as a patch's precondition (409 Conflict). So: the tests give runs a uid, play the Job
controller by patching Job status (and creating the failed pods), and check owner
references instead of garbage collection.

What only a real API server (kind, `make e2e`) proves, marked `kind:` in the tests:
the CRD schema at admission; the status subresource; server-side label selectors; garbage collection of Jobs and
pods through owner references (and the finalizers RBAC that blockOwnerDeletion needs);
the Job controller itself (podFailurePolicy, backoffLimit, activeDeadlineSeconds, TTL,
FallbackToLogsOnError termination messages); Kueue admission; RBAC enforcement (here
every request is checked against controller.rbac instead); Pod Security admission of
the restricted pod spec (here only its schema is checked, by kubernetes-validate); and
secretKeyRef resolution in pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import jsonpatch
import kmock
import pytest
import pytest_asyncio
import yaml

from controller.operator import serve
from controller.settings import ControllerSettings
from jobs.common.names import API_VERSION, GROUP, KIND, PLURAL, SHORT_NAME, VERSION
from jobs.common.stepctx import StepContext, StepResult, execute
from jobs.common.store import FileStore
from tests.miniokit import free_port

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "finetune.dev_finetuneruns.yaml"
RUNS = f"{GROUP}/{VERSION}/{PLURAL}"
JOBS = "batch/v1/jobs"
STEPS = ["eval", "pack", "train", "evaluate", "gguf"]
RUN_RESOURCE = kmock.resource(RUNS)
JOB_RESOURCE = kmock.resource(JOBS)


def load_crd() -> dict[str, Any]:
    if CRD_FILE.exists():
        return yaml.safe_load(CRD_FILE.read_text())
    from jobs.common.crd import build_crd

    return build_crd()


def full_spec(**overrides: Any) -> dict[str, Any]:
    """A spec with all five steps; the files it names are never read (the test plays the pods)."""
    spec: dict[str, Any] = {
        "model": {"hf": "/models/tiny"},
        "data": {"sources": [{"fromStep": "eval", "format": "eval_results"}]},
        "steps": {
            "eval": {"items": "/data/items.jsonl", "backend": {"asgi": "tests.app:app"}},
            "pack": {},
            "train": {"maxSteps": 2},
            "evaluate": {},
            "gguf": {"quantizations": ["Q8_0"]},
        },
        "job": {"backoffLimit": 2},
    }
    spec.update(overrides)
    return spec


class Cluster:
    """The emulator's HTTP side as a test uses it: create runs, play the Job controller."""

    def __init__(self, emulator: kmock.KubernetesEmulator, server: kmock.Server, namespace: str, store: FileStore):
        self.emulator = emulator
        self.http = server.client
        self.url = str(server.url).rstrip("/")
        self.ns = namespace
        self.store = store

    # --- API calls (through HTTP, so that watchers see them) ---------------------------

    async def _send(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        async with self.http.request(method, path, data=json.dumps(body) if body is not None else None, headers=headers) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def create_run(self, name: str, spec: dict[str, Any]) -> str:
        uid = str(uuid.uuid4())
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": self.ns, "uid": uid, "generation": 1},
            "spec": spec,
        }
        await self._send("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}", body)
        return uid

    async def patch_run(self, name: str, patch: dict[str, Any]) -> None:
        await self._send("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}/{name}", patch)

    async def delete_run(self, name: str) -> None:
        await self._send("DELETE", f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}/{name}")

    async def create_secret(self, name: str, data: dict[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": self.ns}, "data": data}
        await self._send("POST", f"/api/v1/namespaces/{self.ns}/secrets", body)

    async def job_status(self, job: str, status: dict[str, Any]) -> None:
        await self._send("PATCH", f"/apis/batch/v1/namespaces/{self.ns}/jobs/{job}/status", {"status": status})

    async def unsuspend_job(self, job: str) -> None:
        await self._send("PATCH", f"/apis/batch/v1/namespaces/{self.ns}/jobs/{job}", {"spec": {"suspend": False}})

    # --- what the emulator holds ----------------------------------------------------------

    def run(self, name: str) -> dict[str, Any] | None:
        try:
            obj = self.emulator.objects[RUN_RESOURCE, self.ns, name]
        except KeyError:
            return None
        return None if obj.deleted else obj.raw

    def status(self, name: str) -> dict[str, Any]:
        return (self.run(name) or {}).get("status") or {}

    def step(self, name: str, step: str) -> dict[str, Any]:
        return next((s for s in self.status(name).get("steps", []) if s["name"] == step), {})

    def jobs(self, run: str | None = None) -> dict[str, dict[str, Any]]:
        """Live Jobs by name (of one run, filtered here as the emulator cannot)."""
        out = {}
        for (res, ns, name), obj in self.emulator.objects.items():
            if res == JOB_RESOURCE and ns == self.ns and not obj.deleted:
                labels = obj.raw["metadata"].get("labels", {})
                if run is None or labels.get(f"{GROUP}/run") == run:
                    out[name] = obj.raw
        return out

    def requests(self, action: str, resource: str, name: str | None = None, subresource: str | None = None) -> list:
        res = kmock.resource(resource)
        return [
            r for r in list(self.emulator)
            if r.action is not None and r.action.value == action.upper() and r.resource == res
            and (name is None or r.name == name or (r.data or {}).get("metadata", {}).get("name") == name)
            and r.subresource == subresource
        ]

    def writes(self, resource: str, name: str, subresource: str | None = None) -> list:
        """Updates of one object that the server took (not those refused with 409)."""
        refused = {id(r) for r in self.emulator.conflicts}
        return [r for r in self.requests("update", resource, name, subresource) if id(r) not in refused]

    def watches(self) -> int:
        """Watch requests on runs and Jobs so far (or in flight, without a request log)."""
        return len(self.requests("watch", RUNS)) + len(self.requests("watch", JOBS))

    def created_jobs(self) -> list[str]:
        return [r.data["metadata"]["name"] for r in self.requests("create", JOBS)]

    # --- the Job controller's and the pods' part --------------------------------------

    def run_pod(self, job: str, body: Callable[[StepContext], StepResult] | None = None) -> None:
        """Do what the Job's pod does: the real step harness with the env the Job carries."""
        spec = self.jobs()[job]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        step = container["command"][-1].removeprefix("jobs.")
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        env["FT_SCRATCH"] = str(Path(self.store.root).parent / "scratch" / job)
        env["FT_PROGRESS_INTERVAL"] = "0"
        with patched_env(env):
            execute(step, body or _write_result)

    async def start_job(self, job: str) -> None:
        await self.job_status(job, {"active": 1, "startTime": _now()})

    async def complete_job(self, job: str, run_pod: bool = True) -> None:
        if run_pod:
            self.run_pod(job)
        t = _now()
        await self.job_status(job, {
            "active": 0, "succeeded": 1, "startTime": t, "completionTime": t,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": t},
                {"type": "Complete", "status": "True", "lastTransitionTime": t},
            ],
        })

    async def fail_job(self, job: str, reason: str, exit_code: int, log_tail: str, failed: int = 1) -> None:
        """The Job failed for good; its last pod ended with `exit_code` and `log_tail` as
        termination message (FallbackToLogsOnError)."""
        t = _now()
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{job}-{uuid.uuid4().hex[:5]}", "namespace": self.ns,
                         "labels": {"batch.kubernetes.io/job-name": job, "job-name": job}},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": job.rsplit("-", 1)[-1],
                "state": {"terminated": {"exitCode": exit_code, "message": log_tail, "finishedAt": t}},
            }]},
        }
        await self._send("POST", f"/api/v1/namespaces/{self.ns}/pods", pod)
        await self.job_status(job, {
            "active": 0, "failed": failed, "startTime": t,
            "conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": f"Job failed: {reason}",
                            "lastTransitionTime": t}],
        })


def _write_result(ctx: StepContext) -> StepResult:
    (ctx.out / "result.txt").write_text(f"{ctx.step} of {ctx.name}\n")
    ctx.upload_outputs()
    return StepResult(metrics={"ok": 1}, outputs={f"{ctx.step}Result": "result.txt"})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def patched_env(env: dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def settle(seconds: float = 0.5) -> None:
    """Give the controller time to do what it should not do (e.g. create a Job)."""
    await asyncio.sleep(seconds)


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator plus three things of a real API server that kopf and the controller
    rely on: every write gets a new resourceVersion (kopf waits for the version its own patch
    made); a merge patch naming a resourceVersion other than the object's is refused with 409
    Conflict (the controller's status writes); and a JSON patch whose test fails is answered
    422 (kopf then retries on the next event).

    kmock matches every request against all requests logged so far, so its cost per request
    grows with the log. With `keep_requests = False` only requests in flight are kept: for
    tests that make thousands of requests and assert on objects, not on requests."""

    keep_requests = True
    _versions = itertools.count(1)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conflicts: list = []  # requests refused with 409: logged, but they changed nothing

    async def _handle(self, request):
        try:
            if request.resource is not None and request.action in (kmock.action.CREATE, kmock.action.UPDATE):
                if request.action == kmock.action.UPDATE and isinstance(request.data, dict):
                    self._check_precondition(request)
                version = str(next(self._versions))
                if isinstance(request.data, dict):
                    request.data.setdefault("metadata", {})["resourceVersion"] = version
                elif isinstance(request.data, list):
                    request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
            return await super()._handle(request)
        except jsonpatch.JsonPatchException as err:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(err)) from None
        finally:
            if not self.keep_requests:
                self._requests.remove(request)

    def _check_precondition(self, request) -> None:
        expected = (request.data.get("metadata") or {}).get("resourceVersion")
        if expected is None:
            return
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return  # kmock answers 404
        obj = self.objects[key]
        current = obj.raw["metadata"].get("resourceVersion")
        if current != expected:
            self.conflicts.append(request)
            raise kmock.KubernetesError(status=409, reason="Conflict", message=(
                f"the object has been modified (resourceVersion {current}, not {expected}); "
                "apply your changes to the latest version and try again"))


@pytest_asyncio.fixture
async def emulator():
    k8s = Emulator()
    k8s.resources.load_bundled()
    crd = load_crd()["spec"]
    k8s.resources[RUNS] = kmock.ResourceInfo(
        kind=crd["names"]["kind"],
        singular=crd["names"]["singular"],
        namespaced=crd["scope"] == "Namespaced",
        shortnames={SHORT_NAME},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        subresources=set(crd["versions"][0].get("subresources", {})),
    )
    async with k8s, kmock.Server(k8s) as server:
        yield k8s, server


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    """Point kopf's login and the controller's client at the emulator (set by `cluster`)."""
    import kubernetes.config.kube_config

    path = tmp_path / "kubeconfig"
    # The client read $KUBECONFIG when it was imported; point its default at this file.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


@pytest_asyncio.fixture
async def cluster(emulator, kubeconfig, tmp_path) -> Cluster:
    k8s, server = emulator
    url = str(server.url).rstrip("/")
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": url}}],
        "users": [{"name": "emu", "user": {}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
    }))
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    return Cluster(k8s, server, namespace, FileStore(tmp_path / "store"))


def controller_settings(cluster: Cluster, **overrides: Any) -> ControllerSettings:
    values: dict[str, Any] = {
        "namespaces": (cluster.ns,),
        "default_store_uri": cluster.store.uri,
        "progress_interval": 0.3,
        "metrics_port": free_port(),
        "liveness": f"http://127.0.0.1:{free_port()}/healthz",
        "secret_backoff": 0.3,
        "workers": 8,
        "images": {s: f"registry.example/ft-{s}:1.0" for s in STEPS},
    }
    values.update(overrides)
    return ControllerSettings(**values)


class Operator:
    """The real controller (kopf + handlers) in a thread with its own event loop, as in a
    process of its own: kopf cancels every task of its loop when it stops."""

    def __init__(self, settings: ControllerSettings):
        self.settings = settings
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(serve(settings, stop_flag=self.stop_flag),), daemon=True)
        self.thread.start()

    async def stop(self) -> None:
        self.stop_flag.set()
        await asyncio.to_thread(self.thread.join, 20)
        assert not self.thread.is_alive(), "the operator did not stop"


@pytest_asyncio.fixture
async def operators(cluster: Cluster):
    """Start an operator with `await operators(settings)`: it returns once the operator watches
    runs and Jobs (runs created earlier would reach it twice: in its listing and in the
    emulator's replay of every object when a watch starts, which a real server does not do).
    All are stopped at the end."""
    started: list[Operator] = []

    async def start(settings: ControllerSettings) -> Operator:
        before = cluster.watches()
        op = Operator(settings)
        started.append(op)
        await wait_for("the operator's watches", lambda: cluster.watches() >= before + 2, timeout=30)
        return op

    yield start
    for op in started:
        if op.thread.is_alive():
            await op.stop()


VERBS = {"LIST": "list", "WATCH": "watch", "FETCH": "get", "CREATE": "create", "UPDATE": "patch", "DELETE": "delete"}


def assert_allowed_by_rbac(cluster: Cluster) -> None:
    """Every API request the controller made (kopf's and its client's; not the test's own)
    is allowed by controller.rbac.RULES."""
    from controller.rbac import allows

    made = set()
    for r in list(cluster.emulator):
        if r.headers.get("User-Agent", "").startswith("kmock/") or r.resource is None or not r.resource.plural:
            continue  # the test's own requests, and API discovery (allowed to everyone)
        resource = r.resource.plural + (f"/{r.subresource}" if r.subresource else "")
        made.add((r.resource.group, resource, VERBS[r.action.value]))
    denied = sorted(m for m in made if not allows(*m))
    assert made and not denied, f"requests not allowed by RULES: {denied}"
