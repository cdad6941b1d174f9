"""Talking to the kind cluster `make e2e` prepared: kubectl, the FineTuneRuns it holds, and
the chart's MinIO through a port-forward."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = os.environ.get("FT_E2E_NAMESPACE", "ft-e2e")
RELEASE = os.environ.get("FT_E2E_RELEASE", "ft")
FULLNAME = f"{RELEASE}-finetune-operator"
BUCKET = "ft-artifacts"
TOOLS = ("kubectl", "helm")

T = TypeVar("T")


def _skip_reason() -> str | None:
    if os.environ.get("FT_E2E") != "1":
        return "e2e needs the kind cluster that `make e2e` creates (it sets FT_E2E=1)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"e2e needs {', '.join(missing)} on PATH"
    return None


requires_cluster = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def kubectl(*args: str, stdin: str | None = None, namespace: str | None = NAMESPACE) -> str:
    cmd = ["kubectl", *(["--namespace", namespace] if namespace else []), *args]
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return done.stdout


def kubectl_json(*args: str, namespace: str | None = NAMESPACE) -> Any:
    return json.loads(kubectl(*args, "-o", "json", namespace=namespace))


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 5) -> T:
    """Call `probe` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def run_status(name: str) -> dict[str, Any]:
    return kubectl_json("get", "finetunerun", name).get("status") or {}


def wait_phase(name: str, phases: set[str], timeout: float) -> dict[str, Any]:
    """The run's status once its phase is one of `phases`; fails early on an unexpected end."""
    final = {"Succeeded", "Failed", "Cancelled"} - phases

    def probe() -> dict[str, Any] | None:
        status = run_status(name)
        if status.get("phase") in final:
            raise AssertionError(f"run {name} ended {status['phase']}: {json.dumps(status, indent=1)}")
        return status if status.get("phase") in phases else None

    return wait_for(f"run {name} to be {' or '.join(sorted(phases))}", probe, timeout)


def step(status: dict[str, Any], name: str) -> dict[str, Any]:
    """One step's status ({} before the controller lists it)."""
    return next((s for s in status.get("steps", []) if s["name"] == name), {})


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


def apply_run(manifest: dict[str, Any]) -> str:
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    return manifest["metadata"]["name"]


def delete_run(name: str) -> None:
    kubectl("delete", "finetunerun", name, "--ignore-not-found", "--wait=true")


def s3_credentials() -> dict[str, str]:
    data = kubectl_json("get", "secret", f"{FULLNAME}-s3")["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def minio_client() -> Iterator[Any]:
    """A boto3 S3 client for the chart's MinIO, through `kubectl port-forward`."""
    import boto3

    port = _free_port()
    forward = subprocess.Popen(
        ["kubectl", "--namespace", NAMESPACE, "port-forward", f"svc/{FULLNAME}-minio", f"{port}:9000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        creds = s3_credentials()
        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )

        def reachable() -> bool:
            try:
                client.head_bucket(Bucket=BUCKET)
                return True
            except Exception:  # the forward is still starting
                return False

        wait_for("the MinIO port-forward", reachable, timeout=60, interval=1)
        yield client
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def keys_under(client: Any, prefix: str) -> dict[str, int]:
    """Object keys under `prefix` with their sizes."""
    out: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out
