"""A step that fails on bad input fails the run once, with its reason in status; a
cancelled run stops its running step."""

from __future__ import annotations

import pytest
import yaml

from tests.e2e.cluster import (
    ROOT, apply_run, condition, delete_run, kubectl, kubectl_json, requires_cluster, run_status, step, wait_for,
    wait_phase,
)

pytestmark = [pytest.mark.e2e, requires_cluster]


def quickstart(name: str) -> dict:
    manifest = yaml.safe_load((ROOT / "examples" / "kind-quickstart.yaml").read_text())
    manifest["metadata"]["name"] = name
    return manifest


def test_missing_input_fails_the_run_without_retries(inputs: dict[str, str]) -> None:
    manifest = quickstart("e2e-missing-data")
    manifest["spec"]["data"]["sources"][0]["path"] = "s3://ft-artifacts/inputs/no-such-file.jsonl"
    name = apply_run(manifest)
    try:
        status = wait_phase(name, {"Failed"}, timeout=15 * 60)
        pack = step(status, "pack")
        assert pack.get("phase") == "Failed"
        assert "no-such-file.jsonl" in (pack.get("message") or "") + (status.get("error") or {}).get("message", "")
        assert condition(status, "Failed")["status"] == "True"
        # A permanent error (exit 2) fails the Job at once: podFailurePolicy, not backoffLimit.
        job = kubectl_json("get", "job", f"{name}-pack")
        assert job["status"].get("failed", 0) == 1
        assert not kubectl("get", "jobs", "-l", f"finetune.dev/run={name},finetune.dev/step=train", "-o", "name")
    finally:
        delete_run(name)


def test_cancel_stops_the_running_step(inputs: dict[str, str]) -> None:
    manifest = quickstart("e2e-cancel")
    manifest["spec"]["steps"]["train"]["maxSteps"] = 100_000  # still training when cancelled
    name = apply_run(manifest)
    try:
        wait_for("the train step to run", lambda: step(run_status(name), "train").get("phase") == "Running",
                 timeout=30 * 60)
        kubectl("patch", "finetunerun", name, "--type=merge", "-p", '{"spec": {"suspend": true}}')
        status = wait_phase(name, {"Cancelled"}, timeout=5 * 60)
        assert condition(status, "Suspended")["status"] == "True"
        wait_for("the train Job to be deleted",
                 lambda: not kubectl("get", "jobs", "-l", f"finetune.dev/run={name},finetune.dev/step=train",
                                     "-o", "name").strip(), timeout=120)
    finally:
        delete_run(name)
