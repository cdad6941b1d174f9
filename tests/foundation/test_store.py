"""The artifact store on file:// and s3:// (a real MinIO server over HTTP)."""

import json
import os

import pytest

from jobs.common import artifacts, keys
from jobs.common.errors import IntegrityError, InvalidKey, MissingInput


def test_bytes_files_list_delete(store, tmp_path):
    store.put_bytes("runs/ns/r/a.txt", b"hello")
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(1024 * 64))
    store.put_file("runs/ns/r/sub/big.bin", local)
    assert store.get_bytes("runs/ns/r/a.txt") == b"hello"
    assert store.get_bytes("runs/ns/r/missing") is None
    assert store.size("runs/ns/r/sub/big.bin") == 1024 * 64
    assert store.list("runs/ns/r") == ["runs/ns/r/a.txt", "runs/ns/r/sub/big.bin"]
    assert store.list("runs/ns") == ["runs/ns/r/a.txt", "runs/ns/r/sub/big.bin"]
    assert store.list("runs/other") == []
    back = tmp_path / "back.bin"
    store.get_file("runs/ns/r/sub/big.bin", back)
    assert back.read_bytes() == local.read_bytes()
    store.delete("runs/ns/r/a.txt")
    assert store.size("runs/ns/r/a.txt") is None


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "runs/../secret", "runs/./x", "runs//x", "runs/x/", "runs/ü", "runs/a b", "runs/$(id)", "a\\b", "x" * 2000],
)
def test_bad_keys_are_refused(store, key):
    with pytest.raises(InvalidKey):
        store.put_bytes(key, b"x")


def test_writer_commits_manifest_last_and_reader_verifies(store, tmp_path):
    w = artifacts.StepWriter(store, "ns", "run1", "pack")
    w.begin()
    f = tmp_path / "train.jsonl"
    f.write_text('{"a": 1}\n')
    w.add_file("train.jsonl", f)
    assert artifacts.read_manifest(store, "ns", "run1", "pack") is None  # not committed yet
    m = w.commit(input_key="k1", code_version="c1", metrics={"rows": 1}, outputs={"train": "train.jsonl"})
    assert artifacts.read_manifest(store, "ns", "run1", "pack") == m
    entry = m["files"][0]
    assert entry["size"] == f.stat().st_size and len(entry["sha256"]) == 64
    got = artifacts.fetch(store, m, tmp_path / "in")
    assert (got / "train.jsonl").read_text() == '{"a": 1}\n'
    # The content-addressed cache entry points at the same files.
    assert artifacts.lookup_cache(store, "pack", "k1")["files"] == m["files"]


def test_checksum_mismatch_is_named(store, tmp_path):
    w = artifacts.StepWriter(store, "ns", "run1", "pack")
    w.begin()
    f = tmp_path / "train.jsonl"
    f.write_text("good\n")
    w.add_file("train.jsonl", f)
    m = w.commit(input_key="k", code_version="c")
    store.put_bytes(m["files"][0]["key"], b"evil\n")  # same size, other content
    with pytest.raises(IntegrityError, match="runs/ns/run1/pack/train.jsonl"):
        artifacts.fetch(store, m, tmp_path / "in")
    assert not (tmp_path / "in" / "train.jsonl").exists()


def test_rerun_uncommits_before_writing(store, tmp_path):
    w = artifacts.StepWriter(store, "ns", "r", "train")
    w.begin()
    w.commit(input_key="k", code_version="c")
    assert artifacts.read_manifest(store, "ns", "r", "train") is not None
    again = artifacts.StepWriter(store, "ns", "r", "train")
    again.begin()  # a new attempt starts: the old output is no longer committed
    assert artifacts.read_manifest(store, "ns", "r", "train") is None


def test_missing_input_names_the_step(store):
    with pytest.raises(MissingInput, match="pack"):
        artifacts.require_manifest(store, "ns", "nope", "pack")


def test_stale_cache_entry_is_a_miss(store, tmp_path):
    w = artifacts.StepWriter(store, "ns", "r", "pack")
    w.begin()
    f = tmp_path / "x"
    f.write_text("12345")
    w.add_file("x", f)
    w.commit(input_key="key", code_version="c")
    store.put_bytes(keys.join(keys.step_prefix("ns", "r", "pack"), "x"), b"1")
    assert artifacts.lookup_cache(store, "pack", "key") is None


def test_s3_large_files_go_multipart(s3_bucket, tmp_path, monkeypatch):
    import boto3

    from jobs.common import store as store_mod

    monkeypatch.setattr(store_mod, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(store_mod, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    s3 = store_mod.S3Store(s3_bucket)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    s3.put_file("runs/ns/r/train/model.bin", big)
    etag = boto3.client("s3").head_object(Bucket=s3_bucket, Key="runs/ns/r/train/model.bin")["ETag"]
    assert etag.strip('"').endswith("-3")  # three parts: a multipart upload


def test_s3_unreachable_gives_transient_error(monkeypatch, tmp_path):
    from jobs.common.errors import TransientError
    from jobs.common.store import S3Store

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on discard
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("FT_STORE_ATTEMPTS", "2")
    monkeypatch.setenv("FT_STORE_RETRY_DELAY", "0.01")
    with pytest.raises(TransientError, match="store unavailable"):
        S3Store("bucket").put_bytes("runs/a/b/c", b"x")


def test_manifest_is_valid_json_with_timings(store):
    w = artifacts.StepWriter(store, "ns", "r", "gguf")
    w.begin()
    w.commit(input_key="k", code_version="c", metrics={"x": 1})
    raw = store.get_bytes("runs/ns/r/gguf/_manifest.json")
    m = json.loads(raw)
    assert m["timings"]["seconds"] >= 0 and m["metrics"] == {"x": 1} and m["cached"] is False
