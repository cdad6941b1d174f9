"""A step process killed with SIGKILL in the middle of writing its output.

Its output is not committed (no `_manifest.json`, no cache entry), whatever it had uploaded is
referenced by nothing, and the next run redoes the step, commits, and its files verify. A third
run is a cache hit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path


from faultkit import REPO, pack_spec, start_step, step_env, wait_for, write_spec
from jobs.common import artifacts
from jobs.common.store import open_store

NS, RUN = "faults", "killed"


def _spec(tmp_path: Path, dataset: Path) -> Path:
    return write_spec(tmp_path / "run.yaml", pack_spec(RUN, [{"path": str(dataset), "format": "openai_chat"}]))


def _run_pack(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.pack"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _no_commit(store) -> None:
    assert artifacts.read_manifest(store, NS, RUN, "pack") is None
    assert [k for k in store.list("cache/pack") if k.endswith("_manifest.json")] == []


def _rerun_commits_and_verifies(store, spec: Path, store_uri: str, tmp_path: Path) -> None:
    again = _run_pack(step_env(spec, store_uri, tmp_path / "scratch-2"))
    assert again.returncode == 0, again.stdout + again.stderr
    manifest = artifacts.read_manifest(store, NS, RUN, "pack")
    assert manifest is not None and manifest["cached"] is False
    local = artifacts.fetch(store, manifest, tmp_path / "verify")  # raises on any checksum mismatch
    counts = json.loads((local / "report.json").read_text())["counts"]
    for split in ("train", "val", "test"):
        with open(local / f"{split}.jsonl", encoding="utf-8") as f:
            assert sum(1 for _ in f) == counts[split]
    assert counts["train"] + counts["val"] + counts["test"] == counts["out"] == 100_000
    cached = artifacts.lookup_cache(store, "pack", manifest["inputKey"])
    assert cached is not None and cached["files"] == manifest["files"]
    # And once more: nothing to do, the committed output is adopted from the cache.
    third = _run_pack(step_env(spec, store_uri, tmp_path / "scratch-3"))
    assert third.returncode == 0 and '"message": "cached"' in third.stdout


def test_sigkill_during_s3_upload(flaky_s3, bucket, big_dataset, tmp_path):
    spec = _spec(tmp_path, big_dataset)
    store_uri = f"s3://{bucket}/team-a"
    proc = start_step("pack", step_env(spec, store_uri, tmp_path / "scratch-1"), tmp_path / "pack-1.log")
    # train.jsonl (18 MB) goes up in two parts: kill once the first part is in.
    wait_for(lambda: flaky_s3.multipart_parts(bucket) >= 1 or proc.poll() is not None, timeout=600)
    flaky_s3.hold()  # nothing more reaches the server: the upload cannot finish behind our back
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    flaky_s3.release()
    assert proc.returncode == -signal.SIGKILL, "the step finished before it could be killed"

    store = open_store(store_uri)
    _no_commit(store)
    left = store.list(f"runs/{NS}/{RUN}/pack")
    assert f"runs/{NS}/{RUN}/pack/train.jsonl" not in left  # a cut multipart upload is not an object
    assert flaky_s3.multipart_parts(bucket) >= 1  # its parts are there, invisible to readers
    _rerun_commits_and_verifies(store, spec, store_uri, tmp_path)


def test_sigkill_while_writing_to_a_file_store(big_dataset, tmp_path):
    spec = _spec(tmp_path, big_dataset)
    root = tmp_path / "store"
    store_uri = root.as_uri()
    out = tmp_path / "scratch-1" / "out"
    step_dir = root / "runs" / NS / RUN / "pack"
    proc = start_step("pack", step_env(spec, store_uri, tmp_path / "scratch-1"), tmp_path / "pack-1.log")

    def writing() -> bool:
        started_local = (out / "train.jsonl").exists()
        started_store = step_dir.is_dir() and any(os.scandir(step_dir))
        return started_local or started_store or proc.poll() is not None

    wait_for(writing, timeout=600, interval=0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the step finished before it could be killed"

    store = open_store(store_uri)
    _no_commit(store)
    # A half-copied file is a hidden temporary (`.tmp-*`), never listed, never read.
    assert not any(".tmp-" in k for k in store.list(f"runs/{NS}/{RUN}"))
    _rerun_commits_and_verifies(store, spec, store_uri, tmp_path)
