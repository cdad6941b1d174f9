"""S3 goes away in the middle of a multipart upload.

With the server back within the retry budget, the store retries with exponential backoff and
the object ends up whole. With the server gone for good, the store gives up with TransientError
"store unavailable" (exit code 75, which the Job policy retries), and the step's output is never
committed, so no manifest ever points at a partial object.

The S3 server is moto's, in this process: a restarted server keeps its buckets and objects (as a
real S3 or MinIO does across an outage), which the tests check rather than assume.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path

import boto3
import pytest

from faultkit import in_thread, wait_for
from jobs.common import artifacts, store as store_mod
from jobs.common.errors import EXIT_TRANSIENT, TransientError
from jobs.common.stepctx import StepResult, execute

MiB = 1024 * 1024


@pytest.fixture
def small_parts(monkeypatch):
    # S3's smallest part is 5 MiB; small parts make a 40 MiB file an 8-part upload.
    monkeypatch.setattr(store_mod, "MULTIPART_THRESHOLD", 5 * MiB)
    monkeypatch.setattr(store_mod, "MULTIPART_CHUNK", 5 * MiB)
    monkeypatch.setenv("FT_STORE_CONCURRENCY", "2")


@pytest.fixture
def big_file(tmp_path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(40 * MiB))
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def retries_logged(caplog) -> list[float]:
    """The backoff delays the store announced, in order."""
    return [
        float(m.group(1))
        for r in caplog.records
        if r.name == "jobs.common.store" and (m := re.search(r"retry \d+/\d+ in ([\d.]+)s", r.getMessage()))
    ]


def test_upload_survives_an_outage_and_completes(flaky_s3, bucket, big_file, small_parts, monkeypatch, caplog):
    monkeypatch.setenv("FT_STORE_ATTEMPTS", "6")
    monkeypatch.setenv("FT_STORE_RETRY_DELAY", "0.5")
    caplog.set_level(logging.WARNING, logger="jobs.common.store")
    store = store_mod.open_store(f"s3://{bucket}/team-a")
    outage: dict[str, float] = {}

    def outage_mid_transfer() -> None:
        wait_for(lambda: flaky_s3.multipart_parts(bucket) >= 1)  # some parts are in, not all
        outage["parts_before"] = flaky_s3.multipart_parts(bucket)
        flaky_s3.stop()
        outage["down"] = time.monotonic()
        time.sleep(2.0)
        flaky_s3.start()
        outage["up"] = time.monotonic()

    chaos = in_thread(outage_mid_transfer)
    store.put_file("runs/faults/r1/train/big.bin", big_file)
    finished = time.monotonic()
    chaos.join(timeout=30)

    assert "down" in outage and "up" in outage, "the outage never happened"
    assert outage["down"] < outage["up"] < finished  # the upload finished after the server came back
    assert 1 <= outage["parts_before"] < 8  # it really was cut mid-transfer
    delays = retries_logged(caplog)
    assert delays, "the store did not retry"
    assert delays == [0.5 * 2**i for i in range(len(delays))]  # exponential backoff
    # The restarted server kept its state, and the object is whole.
    assert store.get_bytes("runs/faults/r1/train/big.bin") == big_file.read_bytes()
    listed = boto3.client("s3", endpoint_url=flaky_s3.endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("team-a/runs/faults/r1/train/big.bin", 40 * MiB)]


def test_upload_fails_clearly_when_the_server_stays_gone(flaky_s3, bucket, big_file, small_parts, monkeypatch, caplog):
    monkeypatch.setenv("FT_STORE_ATTEMPTS", "3")
    monkeypatch.setenv("FT_STORE_RETRY_DELAY", "0.2")
    caplog.set_level(logging.WARNING, logger="jobs.common.store")
    store = store_mod.open_store(f"s3://{bucket}/team-a")

    def outage_for_good() -> None:
        wait_for(lambda: flaky_s3.multipart_parts(bucket) >= 1)
        flaky_s3.stop()

    chaos = in_thread(outage_for_good)
    started = time.monotonic()
    with pytest.raises(TransientError) as exc:
        store.put_file("runs/faults/r1/train/big.bin", big_file)
    chaos.join(timeout=30)
    assert exc.value.message.startswith("store unavailable: upload runs/faults/r1/train/big.bin failed after 3 attempts")
    assert exc.value.exit_code == EXIT_TRANSIENT == 75
    assert retries_logged(caplog) == [0.2, 0.4]
    assert time.monotonic() - started >= 0.6
    # Back up again: the failed upload left no object behind (an S3 object appears whole or not at all).
    flaky_s3.start()
    assert store.size("runs/faults/r1/train/big.bin") is None
    assert store.list("runs/faults/r1") == []


def test_failed_upload_never_commits_the_step(flaky_s3, bucket, big_file, small_parts, monkeypatch, tmp_path):
    """Through the step harness: the body's upload fails, so no manifest (step or cache) is written."""
    monkeypatch.setenv("FT_STORE_ATTEMPTS", "2")
    monkeypatch.setenv("FT_STORE_RETRY_DELAY", "0.1")
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "apiVersion: finetune.dev/v1alpha1\nkind: FineTuneRun\nmetadata: {name: outage, namespace: faults}\n"
        "spec:\n  model: {gguf: models/base.gguf}\n  data: {sources: [{path: rows.jsonl, format: openai_chat}]}\n"
        "  steps: {pack: {}}\n"
    )
    (tmp_path / "rows.jsonl").write_text("{}\n")
    monkeypatch.setenv("FT_SPEC_FILE", str(spec))
    monkeypatch.setenv("FT_STORE_URI", f"s3://{bucket}/team-a")
    monkeypatch.setenv("FT_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("FT_SCRATCH", str(tmp_path / "scratch"))
    store = store_mod.open_store(f"s3://{bucket}/team-a")

    chaos: list = []

    def body(ctx):
        (ctx.out / "report.json").write_text("{}")
        (ctx.out / "train.jsonl").write_bytes(big_file.read_bytes())
        chaos.append(in_thread(lambda: (wait_for(lambda: flaky_s3.multipart_parts(bucket) >= 1), flaky_s3.stop())))
        ctx.upload_outputs()  # report.json goes up, train.jsonl is cut off
        return StepResult(outputs={"train": "train.jsonl"})

    with pytest.raises(TransientError, match="store unavailable"):
        execute("pack", body)
    # The uploads give up as soon as the endpoint is gone, which can be before stop() has freed
    # moto's port: a start() then would find the port taken and wait forever.
    chaos[0].join(timeout=30)
    assert not chaos[0].is_alive()
    flaky_s3.start()
    assert artifacts.read_manifest(store, "faults", "outage", "pack") is None
    assert [k for k in store.list("cache") if k.endswith("_manifest.json")] == []
    left = store.list("runs/faults/outage/pack")
    assert left == ["runs/faults/outage/pack/report.json"]  # uploaded, but referenced by nothing
