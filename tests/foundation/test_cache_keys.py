"""Cache keys that are exact: a step's code version hashes the modules it really imports, and an
s3:// input is fingerprinted by its objects' ETags and sizes."""

from __future__ import annotations

import pytest

from jobs.common import cachekey, codeclosure


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A jobs package with two steps: s1 imports common.a (which imports common.b inside a
    function) and s2.x relatively; nothing imports common.unused."""
    root = tmp_path / "jobs"
    files = {
        "__init__.py": "",
        "common/__init__.py": "",
        "common/a.py": "def f():\n    from jobs.common import b\n    return b\n",
        "common/b.py": "X = 1\n",
        "common/unused.py": "Y = 2\n",
        "common/table.json": "{}",
        "s1/__init__.py": "",
        "s1/__main__.py": "from jobs.common.a import f\nfrom ..s2 import x\nimport os\n",
        "s2/__init__.py": "",
        "s2/x.py": "Z = 3\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    monkeypatch.setattr(codeclosure, "ROOT", root)
    monkeypatch.setattr(cachekey, "ROOT", root)
    cachekey.code_version.cache_clear()
    yield root
    cachekey.code_version.cache_clear()


def test_closure_follows_imports_inside_functions_and_relative_ones(tree):
    got = {p.relative_to(tree).as_posix() for p in codeclosure.closure("s1")}
    assert got == {"__init__.py", "common/__init__.py", "common/a.py", "common/b.py", "common/table.json",
                   "s1/__init__.py", "s1/__main__.py", "s2/__init__.py", "s2/x.py"}


def test_code_version_changes_with_imported_code_only(tree):
    before = cachekey.code_version("s1")
    (tree / "common/unused.py").write_text("Y = 3\n")
    cachekey.code_version.cache_clear()
    assert cachekey.code_version("s1") == before  # not imported: the cache stays
    (tree / "s2/x.py").write_text("Z = 4\n")  # another step's module that s1 imports
    cachekey.code_version.cache_clear()
    assert cachekey.code_version("s1") != before


@pytest.mark.parametrize("step", ["eval", "pack", "train", "evaluate", "gguf"])
def test_no_step_imports_another_step(step):
    closure = {p.relative_to(codeclosure.ROOT).as_posix() for p in codeclosure.closure(step)}
    assert f"{step}/run.py" in closure and "common/stepctx.py" in closure
    others = {p.split("/")[0] for p in closure if "/" in p} - {step, "common"}
    assert others == set(), f"jobs.{step} imports {others}; what steps share belongs in jobs/common"


def test_s3_inputs_are_fingerprinted_by_etag_and_size(monkeypatch):
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        s3.put_object(Bucket="data", Key="train.jsonl", Body=b'{"a": 1}\n')
        s3.put_object(Bucket="data", Key="train.jsonl.bak", Body=b"other")
        first = cachekey.fingerprint("s3://data/train.jsonl", None)
        s3.put_object(Bucket="data", Key="train.jsonl.bak", Body=b"changed")  # a neighbour, not the input
        assert cachekey.fingerprint("s3://data/train.jsonl", None) == first
        s3.put_object(Bucket="data", Key="train.jsonl", Body=b'{"a": 2}\n')  # same size, new content
        assert cachekey.fingerprint("s3://data/train.jsonl", None) != first
        s3.put_object(Bucket="data", Key="model/config.json", Body=b"{}")
        folder = cachekey.fingerprint("s3://data/model", None)
        s3.put_object(Bucket="data", Key="model/weights.bin", Body=b"w")
        assert cachekey.fingerprint("s3://data/model", None) != folder
        assert cachekey.fingerprint("s3://data/nothing.jsonl", None) == "missing:s3://data/nothing.jsonl"
