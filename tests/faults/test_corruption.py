"""The store is corrupted: bytes of a committed input change under its manifest.

The consumer detects the checksum mismatch and names the file, exits 3 (permanent: retrying
cannot repair the store), and commits nothing: no step runs on the bad input.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from faultkit import REPO, pack_spec, step_env, write_rows, write_spec
from jobs.common import artifacts
from jobs.common.errors import EXIT_INTEGRITY
from jobs.common.store import open_store

NS, RUN = "faults", "corrupt"
TRAIN_KEY = f"runs/{NS}/{RUN}/pack/train.jsonl"


# The real train step reads pack's output first thing (before any model is loaded); the bare
# harness with a body that only calls ctx.input_dir("pack") is the same check without the
# seconds train spends importing transformers.
CONSUMERS = {
    "train-step": [sys.executable, "-m", "jobs.train"],
    "input-dir": [
        sys.executable, "-c",
        "from jobs.common.stepctx import StepResult, main\n"
        "main('train', lambda ctx: (ctx.input_dir('pack'), StepResult())[1])",
    ],
}


@pytest.fixture(params=[("file", "train-step"), ("s3", "input-dir")], ids=lambda p: "-".join(p))
def setup(request, tmp_path) -> tuple[str, list[str]]:
    kind, consumer = request.param
    if kind == "file":
        return (tmp_path / "store").as_uri(), CONSUMERS[consumer]
    bucket = request.getfixturevalue("s3_bucket")  # tests/conftest.py: a real MinIO over HTTP
    return f"s3://{bucket}/team-a", CONSUMERS[consumer]


@pytest.fixture
def project(tmp_path) -> Path:
    write_rows(tmp_path / "rows.jsonl", 60)
    spec = pack_spec(RUN, [{"path": "rows.jsonl", "format": "openai_chat"}], steps={"pack": {}, "train": {"maxSteps": 1}})
    return write_spec(tmp_path / "run.yaml", spec)


def _step(step: str, spec: Path, store_uri: str, scratch: Path, argv: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv or [sys.executable, "-m", f"jobs.{step}"], cwd=REPO, env=step_env(spec, store_uri, scratch),
        capture_output=True, text=True, timeout=600,
    )


def _flip_bytes(store, key: str) -> None:
    data = bytearray(store.get_bytes(key))
    data[100:104] = bytes(b ^ 0xFF for b in data[100:104])  # same size: a size check cannot see it
    store.put_bytes(key, bytes(data))


def test_flipped_bytes_stop_the_consumer(project, setup, tmp_path):
    store_uri, consumer = setup
    store = open_store(store_uri)
    packed = _step("pack", project, store_uri, tmp_path / "s-pack")
    assert packed.returncode == 0, packed.stdout + packed.stderr
    _flip_bytes(store, TRAIN_KEY)

    done = _step("train", project, store_uri, tmp_path / "s-train", consumer)
    assert done.returncode == EXIT_INTEGRITY == 3, done.stdout + done.stderr
    errors = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"type": "error"')]
    assert errors and errors[0]["code"] == "ChecksumMismatch"
    assert f"checksum mismatch on {TRAIN_KEY} (from step 'pack')" in errors[0]["message"]
    assert "Traceback" not in done.stdout + done.stderr
    assert artifacts.read_manifest(store, NS, RUN, "train") is None
    assert store.list(f"runs/{NS}/{RUN}/train") == []
    # The bad copy was not left in the consumer's scratch either.
    assert not (tmp_path / "s-train" / "inputs" / "pack" / "train.jsonl").exists()


def test_ftctl_run_fails_the_run_on_a_corrupt_input(project, tmp_path):
    store_uri = (tmp_path / "store").as_uri()
    store = open_store(store_uri)
    packed = _step("pack", project, store_uri, tmp_path / "s-pack")
    assert packed.returncode == 0, packed.stderr
    _flip_bytes(store, TRAIN_KEY)

    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli.main", "run", str(project), "--store", store_uri, "--work-dir", str(tmp_path / "w")],
        cwd=tmp_path, env=step_env(project, store_uri, tmp_path / "unused"), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    status = json.loads(store.get_bytes(f"runs/{NS}/{RUN}/status.json"))
    assert status["phase"] == "Failed"
    assert status["error"]["code"] == "ChecksumMismatch" and status["error"]["step"] == "train"
    assert TRAIN_KEY in status["error"]["message"]
    train = next(s for s in status["steps"] if s["name"] == "train")
    assert train["phase"] == "Failed" and train["attempts"] == 1  # exit 3 is permanent: no retry
    assert artifacts.read_manifest(store, NS, RUN, "train") is None
