"""Fixtures for fault injection (the tools are in faultkit.py)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faultkit import FlakyS3, write_rows  # noqa: E402


@pytest.fixture
def flaky_s3(monkeypatch):
    s3 = FlakyS3()
    s3.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    yield s3
    if s3.up:
        s3.stop()


@pytest.fixture
def bucket(flaky_s3) -> str:
    import boto3

    name = f"ft-faults-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=flaky_s3.endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def big_dataset(tmp_path_factory) -> Path:
    """100,000 distinct chat rows (22 MB; train.jsonl is an 18 MB, two-part S3 upload): pack
    takes seconds on it, long enough to be killed in the middle."""
    return write_rows(tmp_path_factory.mktemp("big") / "big.jsonl", 100_000)


