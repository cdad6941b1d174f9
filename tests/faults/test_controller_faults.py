"""The controller, run as `ftctl controller` in a process of its own against kmock's Kubernetes
emulator (tests/controller/conftest.py), with the test playing the Job controller.

- The controller is SIGKILLed after the API server stored its Job and before it could patch the
  run's status. A new controller creates no second Job and the run finishes.
- A step that exits with a permanent code (2) and one with a retryable code (75), each a real
  step process run with the env its Job carries: the Job's own podFailurePolicy decides, as the
  Job controller would, and the run's status shows the reason and the attempts.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
import pytest_asyncio

import kmock

import tests.controller.harness as testkit
from tests.controller.harness import (  # fixtures and helpers of the controller's suite
    JOBS,
    REPO,
    Cluster,
    cluster,
    free_port,
    full_spec,
    kubeconfig,
    settle,
    wait_for,
)

pytestmark = pytest.mark.asyncio
__all__ = ["cluster", "kubeconfig"]  # fixtures used by name


class KillingEmulator(testkit.Emulator):
    """The suite's emulator, plus a hook run right after a Job is stored, before the reply."""

    after_job_created: Callable[[], None] | None = None

    async def _handle(self, request):
        response = await super()._handle(request)
        hook = self.after_job_created
        if hook and request.action == kmock.action.CREATE and request.resource == kmock.resource(JOBS):
            self.after_job_created = None
            hook()
        return response


@pytest_asyncio.fixture
async def emulator():
    k8s = KillingEmulator()
    k8s.resources.load_bundled()
    crd = testkit.load_crd()["spec"]
    k8s.resources[testkit.RUNS] = kmock.ResourceInfo(
        kind=crd["names"]["kind"], singular=crd["names"]["singular"], namespaced=True,
        shortnames={testkit.SHORT_NAME}, verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        subresources=set(crd["versions"][0].get("subresources", {})),
    )
    async with k8s, kmock.Server(k8s) as server:
        yield k8s, server


class ControllerProcess:
    def __init__(self, cluster: Cluster, kubeconfig: Path, log: Path):
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "FT_NAMESPACES": cluster.ns,
            "FT_STORE_URI": cluster.store.uri,
            "FT_METRICS_PORT": "0",
            "FT_LIVENESS": self.liveness,
            "FT_PROGRESS_INTERVAL": "1",
            "PYTHONPATH": str(REPO),
        }
        self.log = log
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobs.cli.main", "controller"], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        try:
            with urllib.request.urlopen(self.liveness, timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    async def ready(self) -> None:
        await wait_for("controller liveness", lambda: self.proc.poll() is not None or self.alive(), timeout=120)
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest_asyncio.fixture
async def controllers(cluster, kubeconfig, tmp_path):
    started: list[ControllerProcess] = []

    async def start() -> ControllerProcess:
        c = ControllerProcess(cluster, kubeconfig, tmp_path / f"controller-{len(started)}.log")
        started.append(c)
        await c.ready()
        return c

    yield start
    for c in started:
        await c.stop()


async def test_controller_killed_between_job_create_and_status_patch(cluster: Cluster, controllers):
    first = await controllers()
    cluster.emulator.after_job_created = first.kill  # dies before it hears back about its Job
    await cluster.create_run("crash1", full_spec())
    await asyncio.to_thread(first.proc.wait, 60)
    assert first.proc.returncode == -signal.SIGKILL
    assert list(cluster.jobs("crash1")) == ["crash1-eval"]  # the API server has the Job...
    assert cluster.step("crash1", "eval").get("job") is None  # ...the run's status does not

    await controllers()
    await wait_for("eval adopted", lambda: cluster.step("crash1", "eval").get("job") == "crash1-eval", timeout=60)
    for step in testkit.STEPS:
        job = f"crash1-{step}"
        await wait_for(job, lambda: job in cluster.jobs("crash1"), timeout=60)
        await cluster.complete_job(job)
    await wait_for("Succeeded", lambda: cluster.status("crash1").get("phase") == "Succeeded", timeout=60)

    assert sorted(cluster.jobs("crash1")) == sorted(f"crash1-{s}" for s in testkit.STEPS)
    # The one Job create the new controller may have sent for eval was refused (409), not doubled.
    stored = [r for r in cluster.requests("create", JOBS) if r.data["metadata"]["name"] == "crash1-eval"]
    assert 1 <= len(stored) <= 2
    assert not cluster.requests("delete", JOBS)
    assert [(s["phase"], s["attempts"]) for s in cluster.status("crash1")["steps"]] == [("Succeeded", 1)] * 5


# --- exit codes ------------------------------------------------------------------------------


def pod_env(cluster: Cluster, job: str) -> dict[str, str]:
    """What the Job's pod gets: its env values (the spec as JSON, the store), nothing else."""
    container = cluster.jobs()[job]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    env.update(PATH=os.environ["PATH"], PYTHONPATH=str(REPO), FT_SCRATCH=str(Path(cluster.store.root).parent / job))
    return env


def run_pod(cluster: Cluster, job: str) -> tuple[int, str]:
    """Run the Job's command as a real process; (exit code, log tail as the termination message)."""
    container = cluster.jobs()[job]["spec"]["template"]["spec"]["containers"][0]
    command = [sys.executable if c == "python" else c for c in container["command"]]
    done = subprocess.run(command, cwd=REPO, env=pod_env(cluster, job), capture_output=True, text=True, timeout=300)
    return done.returncode, "\n".join((done.stdout + done.stderr).splitlines()[-20:])


def policy_action(job: dict[str, Any], exit_code: int) -> str:
    """What the Job controller does with a pod that exited `exit_code`: the first matching rule
    of the Job's podFailurePolicy, else Count (a retry within backoffLimit)."""
    container = job["spec"]["template"]["spec"]["containers"][0]["name"]
    for rule in job["spec"].get("podFailurePolicy", {}).get("rules", []):
        codes = rule.get("onExitCodes")
        if codes and codes.get("containerName", container) == container:
            hit = exit_code in codes["values"]
            if hit == (codes["operator"] == "In"):
                return rule["action"]
    return "Count"


async def play_job_controller(cluster: Cluster, job: str) -> list[int]:
    """Run pods of `job` until the Job succeeds or fails by its policy; the exit codes seen."""
    spec = cluster.jobs()[job]["spec"]
    codes: list[int] = []
    while True:
        code, tail = await asyncio.to_thread(run_pod, cluster, job)
        codes.append(code)
        if code == 0:
            await cluster.complete_job(job, run_pod=False)
            return codes
        action = policy_action(cluster.jobs()[job], code)
        if action == "FailJob" or len(codes) > spec["backoffLimit"]:
            reason = "PodFailurePolicy" if action == "FailJob" else "BackoffLimitExceeded"
            await cluster.fail_job(job, reason=reason, exit_code=code, log_tail=tail, failed=len(codes))
            return codes
        await cluster.job_status(job, {"active": 1, "failed": len(codes), "startTime": testkit._now()})
        await wait_for(f"{job} attempt {len(codes) + 1}", lambda: cluster.step(job.rsplit("-", 1)[0], job.rsplit("-", 1)[1]).get("attempts") == len(codes) + 1, timeout=30)


def eval_spec(tmp_path: Path, backend: dict[str, Any], items: list[str]) -> dict[str, Any]:
    path = tmp_path / "items.jsonl"
    path.write_text("".join(line + "\n" for line in items))
    spec = full_spec(steps={"eval": {"items": str(path), "backend": backend, "retries": 1, "timeoutSeconds": 2}})
    spec.pop("data")
    return spec


ITEM = json.dumps({"id": "q1", "messages": [{"role": "user", "content": "Hi?"}], "expected": "Hello"})


async def test_permanent_exit_code_fails_the_run_at_once(cluster: Cluster, controllers, tmp_path):
    await controllers()
    spec = eval_spec(tmp_path, {"asgi": "tests.eval.openai_fake:app"}, [ITEM, '{"id": "q2", "messages": [}'])
    await cluster.create_run("perm", spec)
    await wait_for("eval Job", lambda: "perm-eval" in cluster.jobs(), timeout=60)
    codes = await play_job_controller(cluster, "perm-eval")
    assert codes == [2]  # invalid data: one attempt, no retry
    await wait_for("Failed", lambda: cluster.status("perm").get("phase") == "Failed", timeout=60)
    step = cluster.step("perm", "eval")
    assert step["phase"] == "Failed" and step["attempts"] == 1
    assert step["reason"] == "InvalidData"
    assert "line 2: not JSON" in step["message"] and "PodFailurePolicy, exit code 2" in step["message"]
    assert cluster.status("perm")["error"]["code"] == "InvalidData"


async def test_retryable_exit_code_is_retried_up_to_the_backoff_limit(cluster: Cluster, controllers, tmp_path):
    await controllers()
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: the endpoint is unavailable
    await cluster.create_run("flaky", eval_spec(tmp_path, {"endpoint": {"baseUrl": closed, "model": "m"}}, [ITEM]))
    await wait_for("eval Job", lambda: "flaky-eval" in cluster.jobs(), timeout=60)
    codes = await play_job_controller(cluster, "flaky-eval")
    assert codes == [75, 75, 75]  # EX_TEMPFAIL, retried: backoffLimit 2 -> 3 attempts
    await wait_for("Failed", lambda: cluster.status("flaky").get("phase") == "Failed", timeout=60)
    step = cluster.step("flaky", "eval")
    assert step["phase"] == "Failed" and step["attempts"] == 3
    assert step["reason"] == "EndpointUnavailable"
    assert "BackoffLimitExceeded, exit code 75" in step["message"]
    await settle()
    assert [r.data["metadata"]["name"] for r in cluster.requests("create", JOBS)] == ["flaky-eval"]
