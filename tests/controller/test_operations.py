"""Operating runs: controller restarts, cancel and resume, the step cache, deletion."""

from __future__ import annotations

import asyncio

import pytest

from tests.controller.harness import STEPS, Cluster, assert_allowed_by_rbac, controller_settings, full_spec, settle, wait_for
from jobs.cli.main import main as ftctl
from jobs.common import keys

pytestmark = pytest.mark.asyncio


async def ftctl_cancel(cluster: Cluster, run: str, *extra: str, code: int = 0) -> None:
    def call() -> None:
        with pytest.raises(SystemExit) as exit_:
            ftctl(["cancel", run, "-n", cluster.ns, *extra])
        assert exit_.value.code == code

    await asyncio.to_thread(call)


async def test_restart_mid_run_creates_no_duplicate_jobs(cluster: Cluster, operators):
    settings = controller_settings(cluster)
    first = await operators(settings)
    await cluster.create_run("r1", full_spec())
    await wait_for("eval Job", lambda: "r1-eval" in cluster.jobs())
    await cluster.complete_job("r1-eval")
    await wait_for("pack Job", lambda: "r1-pack" in cluster.jobs())
    await first.stop()

    # While no controller runs: a step finishes and a new run arrives.
    await cluster.complete_job("r1-pack")
    other = full_spec()
    other["steps"]["eval"]["mode"] = "other"  # not a cache hit of r1
    await cluster.create_run("r2", other)
    await settle(0.3)
    assert "r2-eval" not in cluster.jobs()

    await operators(settings.model_copy(update={"metrics_port": 0}))
    await wait_for("r1 train and r2 eval", lambda: {"r1-train", "r2-eval"} <= set(cluster.jobs()))
    for step in STEPS[2:]:
        await wait_for(f"r1-{step}", lambda: f"r1-{step}" in cluster.jobs())
        await cluster.complete_job(f"r1-{step}")
    await wait_for("r1 Succeeded", lambda: cluster.status("r1").get("phase") == "Succeeded")
    created = cluster.created_jobs()
    assert len(created) == len(set(created)), f"a Job was created twice: {created}"
    assert [s["phase"] for s in cluster.status("r1")["steps"]] == ["Succeeded"] * 5


async def test_lost_status_write_after_job_creation_creates_no_duplicate(cluster: Cluster, operators, monkeypatch):
    """The controller creates a Job and then fails to record it in status (as if it died in
    between): the retried reconcile finds the Job and does not create another."""
    from controller.kube import Kube

    real = Kube.patch_run_status
    failures = []

    def flaky(self, namespace, name, patch, resource_version=None):
        if not failures:
            failures.append(patch)
            raise RuntimeError("connection lost")
        return real(self, namespace, name, patch, resource_version)

    monkeypatch.setattr(Kube, "patch_run_status", flaky)
    await operators(controller_settings(cluster))
    await cluster.create_run("l1", full_spec())
    await wait_for("eval Job", lambda: "l1-eval" in cluster.jobs())
    await wait_for("the failed status write", lambda: failures)
    await cluster.start_job("l1-eval")  # the Job's next event makes the controller look again
    await wait_for("eval Running in status", lambda: cluster.step("l1", "eval").get("phase") == "Running")
    assert failures and cluster.created_jobs() == ["l1-eval"]
    await cluster.complete_job("l1-eval")
    await wait_for("pack Job", lambda: "l1-pack" in cluster.jobs())
    assert cluster.created_jobs() == ["l1-eval", "l1-pack"]


async def test_cancel_and_resume_continue_from_the_unfinished_step(cluster: Cluster, operators, capsys):
    await operators(controller_settings(cluster))
    await cluster.create_run("c1", full_spec())
    for step in ("eval", "pack"):
        await wait_for(step, lambda: f"c1-{step}" in cluster.jobs())
        await cluster.complete_job(f"c1-{step}")
    await wait_for("train Job", lambda: "c1-train" in cluster.jobs())
    await cluster.start_job("c1-train")
    # The train pod gets to commit its output, then the run is cancelled before the Job ends.
    cluster.run_pod("c1-train")

    await ftctl_cancel(cluster, "no-such-run", code=2)
    assert f"error: FineTuneRun {cluster.ns}/no-such-run not found" in capsys.readouterr().err
    await ftctl_cancel(cluster, "c1")
    await wait_for("Cancelled", lambda: cluster.status("c1").get("phase") == "Cancelled")
    assert "c1-train" not in cluster.jobs()  # kind: its pod is deleted with it
    assert cluster.step("c1", "train")["phase"] == "Cancelled"
    suspended = next(c for c in cluster.status("c1")["conditions"] if c["type"] == "Suspended")
    assert suspended["status"] == "True" and suspended["reason"] == "Cancelled"

    await ftctl_cancel(cluster, "c1", "--resume")
    # train's committed output is found in the step cache: no second train Job.
    await wait_for("evaluate Job", lambda: "c1-evaluate" in cluster.jobs())
    await wait_for("train Cached", lambda: cluster.step("c1", "train")["phase"] == "Cached")
    # The resume is recorded (the planner keeps this condition for one status write only).
    versions = cluster.emulator.objects["finetune.dev/v1alpha1/finetuneruns", cluster.ns, "c1"].history
    conditions = [c for v in versions if v is not None for c in dict(v).get("status", {}).get("conditions", [])]
    resumed = [c for c in conditions if c["type"] == "Suspended" and c["status"] == "False"]
    assert resumed and resumed[0]["reason"] == "Resumed"

    # Cancelled again before evaluate committed anything: resuming runs it again.
    await cluster.patch_run("c1", {"spec": {"suspend": True}})
    await wait_for("Cancelled again", lambda: cluster.status("c1").get("phase") == "Cancelled")
    await wait_for("evaluate Job deleted", lambda: "c1-evaluate" not in cluster.jobs())
    await cluster.patch_run("c1", {"spec": {"suspend": False}})
    await wait_for("evaluate Job again", lambda: "c1-evaluate" in cluster.jobs())
    await cluster.complete_job("c1-evaluate")
    await wait_for("gguf Job", lambda: "c1-gguf" in cluster.jobs())
    await cluster.complete_job("c1-gguf")
    await wait_for("Succeeded", lambda: cluster.status("c1").get("phase") == "Succeeded")

    assert sorted(cluster.created_jobs()) == sorted(["c1-eval", "c1-pack", "c1-train", "c1-evaluate", "c1-evaluate", "c1-gguf"])
    assert [s["phase"] for s in cluster.status("c1")["steps"]] == ["Succeeded", "Succeeded", "Cached", "Succeeded", "Succeeded"]


async def test_cached_steps_create_no_jobs(cluster: Cluster, operators):
    await operators(controller_settings(cluster))
    await cluster.create_run("a1", full_spec())
    for step in STEPS:
        await wait_for(step, lambda: f"a1-{step}" in cluster.jobs())
        await cluster.complete_job(f"a1-{step}")
    await wait_for("a1 Succeeded", lambda: cluster.status("a1").get("phase") == "Succeeded")

    # The same spec again under another name: every step is a cache hit.
    await cluster.create_run("a2", full_spec())
    await wait_for("a2 Succeeded", lambda: cluster.status("a2").get("phase") == "Succeeded")
    assert not cluster.jobs("a2")
    steps = cluster.status("a2")["steps"]
    assert [s["phase"] for s in steps] == ["Cached"] * 5 and all(s["cached"] for s in steps)
    manifest = cluster.store.get_bytes(keys.join(keys.step_prefix(cluster.ns, "a2", "train"), "_manifest.json"))
    assert b'"cachedFrom": "%s/a1"' % cluster.ns.encode() in manifest
    assert_allowed_by_rbac(cluster)


async def test_delete_removes_artifacts_only_when_asked(cluster: Cluster, operators):
    await operators(controller_settings(cluster))
    await cluster.create_run("keep", full_spec())
    drop = full_spec(cleanup="deleteArtifacts")
    drop["steps"]["eval"]["mode"] = "drop"  # not a cache hit of keep's steps
    await cluster.create_run("drop", drop)
    await wait_for("finalizer on drop only", lambda: (cluster.run("drop")["metadata"].get("finalizers") or [None])[0] == "finetune.dev/delete-artifacts")
    assert "finalizers" not in cluster.run("keep")["metadata"]
    for run in ("keep", "drop"):
        await wait_for(f"{run} eval", lambda: f"{run}-eval" in cluster.jobs())
        await cluster.complete_job(f"{run}-eval")
    await wait_for("pack Jobs", lambda: {"keep-pack", "drop-pack"} <= set(cluster.jobs()))

    for run in ("keep", "drop"):
        await cluster.delete_run(run)
    await wait_for("both runs gone", lambda: cluster.run("keep") is None and cluster.run("drop") is None)
    assert cluster.store.list(keys.run_prefix(cluster.ns, "drop")) == []
    assert cluster.store.list(keys.run_prefix(cluster.ns, "keep")) != []
    # kind: the Jobs are garbage-collected through these owner references.
    assert all(j["metadata"]["ownerReferences"][0]["name"] in ("keep", "drop") for j in cluster.jobs().values())
    assert_allowed_by_rbac(cluster)
