"""Fixtures shared by the whole suite: stores on both backends, real S3 servers."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.miniokit import S3Server, free_port, minio_binary, start_minio

# Nothing in the suite may reach a hub; fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def minio_server(tmp_path_factory) -> S3Server:
    """A real MinIO on 127.0.0.1 (the S3 server clusters run). `.ci/run` builds it; elsewhere the
    tests that need it skip, unless FT_REQUIRE_MINIO=1 makes its absence a failure."""
    binary = minio_binary()
    if binary is None:
        if os.environ.get("FT_REQUIRE_MINIO") == "1":
            pytest.fail("FT_REQUIRE_MINIO=1 but no minio binary: run `make minio`")
        pytest.skip("no minio binary (`make minio` builds it from Go modules)")
    root = tmp_path_factory.mktemp("minio")
    server, proc = start_minio(binary, root, root / "minio.log")
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def moto_server() -> S3Server:
    """moto's S3 server on 127.0.0.1, for what MinIO cannot do: accept any credentials (the
    security test plants its own) and fail on command (tests/faults)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield S3Server(f"http://127.0.0.1:{port}", "test", "test")
    server.stop()


def _bucket(server: S3Server, monkeypatch) -> str:
    import boto3

    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    name = f"ft-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_bucket(minio_server, monkeypatch) -> str:
    """A fresh bucket on MinIO; the AWS_* variables point at it for this test."""
    return _bucket(minio_server, monkeypatch)


@pytest.fixture
def moto_bucket(moto_server, monkeypatch) -> str:
    return _bucket(moto_server, monkeypatch)


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    """The same tests against both backends."""
    from jobs.common.store import open_store

    if request.param == "file":
        return open_store((tmp_path / "store").as_uri())
    bucket = request.getfixturevalue("s3_bucket")
    os.environ["FT_STORE_RETRY_DELAY"] = "0.05"
    return open_store(f"s3://{bucket}/team-a")
