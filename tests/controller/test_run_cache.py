"""Reconciles work from the watched copy of a run, and never write status over a newer run."""

from __future__ import annotations

import copy

import pytest

from controller.kube import Conflict
from controller.metrics import Metrics
from controller.reconcile import SPEC_ANNOTATION, Reconciler
from controller.runcache import RunCache, is_older, trimmed
from controller.settings import ControllerSettings
from tests.controller.harness import RUNS, Cluster, controller_settings, full_spec, wait_for


def body(version: str, phase: str = "Running", **status) -> dict:
    return {
        "apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u", "resourceVersion": version, "labels": {"team": "a"},
                     "annotations": {SPEC_ANNOTATION: "{}", "finetune.dev/last-handled-configuration": "x" * 1000}},
        "spec": {"model": {"hf": "m"}},
        "status": {"phase": phase, **status},
    }


def test_cache_keeps_the_newest_copy_and_only_what_a_reconcile_reads():
    cache = RunCache(SPEC_ANNOTATION)
    cache.put(body("7", currentStep="pack"))
    assert cache.put(body("5", currentStep="eval"))["status"]["currentStep"] == "pack"  # a late watch event
    assert cache.get("ns", "r")["metadata"]["resourceVersion"] == "7"
    cache.put(body("8", currentStep="train"))
    held = cache.get("ns", "r")
    assert held["status"]["currentStep"] == "train" and held["metadata"]["annotations"] == {SPEC_ANNOTATION: "{}"}
    assert held["metadata"]["labels"] == {"team": "a"} and held["spec"] == {"model": {"hf": "m"}}
    # A finished run is never acted on again: only its phase is kept.
    assert trimmed(body("9", phase="Succeeded", steps=[{"name": "eval"}]), SPEC_ANNOTATION)["status"] == {"phase": "Succeeded"}
    assert "spec" not in trimmed(body("9", phase="Failed"), SPEC_ANNOTATION)
    cache.drop("ns", "r")
    assert cache.get("ns", "r") is None and len(cache) == 0
    # Versions that are not integers say nothing about their order: the newer arrival is kept.
    assert is_older("5", "7") and not is_older("7", "7") and not is_older("a5", "7") and not is_older(None, "7")


class FakeKube:
    """Answers status patches from a list of outcomes; records each patch's precondition."""

    def __init__(self, outcomes: list, fresh: dict | None):
        self.outcomes, self.fresh, self.patches, self.reads = outcomes, fresh, [], 0

    def patch_run_status(self, namespace, name, patch, resource_version=None):
        self.patches.append((patch, resource_version))
        outcome = self.outcomes.pop(0)
        if outcome is Conflict:
            raise Conflict(f"{namespace}/{name}")
        return outcome

    def get_run(self, namespace, name):
        self.reads += 1
        return copy.deepcopy(self.fresh)


def reconciler(kube: FakeKube) -> Reconciler:
    return Reconciler(ControllerSettings(), kube, Metrics(), RunCache(SPEC_ANNOTATION))  # type: ignore[arg-type]


def test_a_write_refused_only_for_a_metadata_change_is_written_over_the_new_version():
    # kopf writes its own annotations after a handler: the run is newer, what status was computed from is not.
    fresh = body("12")
    fresh["metadata"]["annotations"]["kopf.zalando.org/touch"] = "1"
    kube = FakeKube([Conflict, body("13")], fresh)
    r = reconciler(kube)
    r._write_status(trimmed(body("11"), SPEC_ANNOTATION), {"currentStep": "pack"})
    assert kube.patches == [({"currentStep": "pack"}, "11"), ({"currentStep": "pack"}, "12")] and kube.reads == 1
    assert r.runs.get("ns", "r")["metadata"]["resourceVersion"] == "13"


@pytest.mark.parametrize("change", ["status", "spec", "deletion"])
def test_a_write_refused_because_its_inputs_changed_is_not_retried(change):
    fresh = body("12")
    if change == "status":
        fresh["status"]["phase"] = "Cancelled"
    elif change == "spec":
        fresh["spec"]["suspend"] = True
    else:
        fresh["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube = FakeKube([Conflict], fresh)
    r = reconciler(kube)
    with pytest.raises(Conflict):
        r._write_status(trimmed(body("11"), SPEC_ANNOTATION), {"currentStep": "pack"})
    assert len(kube.patches) == 1  # nothing computed from the old copy is written
    assert r.runs.get("ns", "r")["metadata"]["resourceVersion"] == "12"  # the next attempt starts from the fresh one


@pytest.mark.asyncio
async def test_a_stale_copy_writes_nothing_stale_and_the_run_goes_on(cluster: Cluster, operators, monkeypatch):
    """The controller's copy of a run is made stale on purpose (as a lagging watch would):
    its status write is refused, it reads the run and reconciles again, and no status
    version ever goes back."""
    await operators(controller_settings(cluster))
    await cluster.create_run("s1", full_spec())
    await wait_for("eval Job", lambda: "s1-eval" in cluster.jobs())
    await wait_for("eval Running", lambda: cluster.step("s1", "eval").get("phase") == "Running")
    stale = copy.deepcopy(cluster.run("s1"))
    await cluster.complete_job("s1-eval")
    await wait_for("pack Running", lambda: cluster.step("s1", "pack").get("phase") == "Running")

    real_get = RunCache.get
    served, conflicts = [], []

    def stale_once(self, namespace, name):
        if name == "s1" and not served:
            served.append(stale)
            return trimmed(stale, SPEC_ANNOTATION)
        return real_get(self, namespace, name)

    from controller.kube import Kube

    real_patch = Kube.patch_run_status

    def counting(self, namespace, name, patch, resource_version=None):
        try:
            return real_patch(self, namespace, name, patch, resource_version)
        except Conflict:
            conflicts.append(resource_version)
            raise

    monkeypatch.setattr(RunCache, "get", stale_once)
    monkeypatch.setattr(Kube, "patch_run_status", counting)
    await cluster.start_job("s1-pack")  # a Job event: the reconcile takes the (stale) copy
    await wait_for("pack's start recorded", lambda: cluster.step("s1", "pack").get("started") and conflicts)
    assert served and conflicts == [stale["metadata"]["resourceVersion"]]
    history = [dict(v).get("status") or {} for v in cluster.emulator.objects[RUNS, cluster.ns, "s1"].history if v is not None]
    eval_phases = [next((s["phase"] for s in h.get("steps", []) if s["name"] == "eval"), None) for h in history]
    first_done = eval_phases.index("Succeeded")
    assert all(p == "Succeeded" for p in eval_phases[first_done:]), eval_phases  # never went back
    assert cluster.created_jobs() == ["s1-eval", "s1-pack"]
