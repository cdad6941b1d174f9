"""The torch-free images, built for real and run the way the Job builder runs them: numeric
non-root uid, read-only root with a tmpfs /tmp, no capabilities, no new privileges, no network.

`make images-smoke` builds them from the local base (images/base.sh) first; without a Docker
engine these tests skip, unless FT_REQUIRE_DOCKER=1 makes that a failure (CI sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("FT_IMAGE_PREFIX", "finetune-operator")
TAG = os.environ.get("FT_IMAGE_TAG", "smoke")
HARDENED = ["--network", "none", "--user", "10001:10001", "--read-only", "--tmpfs", "/tmp:rw,size=256m",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


def _docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module", autouse=True)
def docker_engine() -> None:
    if not _docker_ready():
        if os.environ.get("FT_REQUIRE_DOCKER") == "1":
            pytest.fail("FT_REQUIRE_DOCKER=1 but no Docker engine answers `docker info`")
        pytest.skip("no Docker engine (`make images-smoke` needs one)")


def image(component: str) -> str:
    name = f"{PREFIX}/{component}:{TAG}"
    if subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode != 0:
        pytest.fail(f"{name} is not built: run `make images-smoke`")
    return name


def run(component: str, *args: str, env: dict[str, str] | None = None, volumes: list[str] = ()) -> subprocess.CompletedProcess:
    cmd = ["docker", "run", "--rm", *HARDENED]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    for v in volumes:
        cmd += ["-v", v]
    return subprocess.run([*cmd, image(component), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("component", ["pack", "eval"])
def test_a_bad_spec_exits_2_with_the_json_error_line(component):
    proc = run(component, env={"FT_SPEC": '{"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun"}',
                               "FT_STORE_URI": "file:///tmp/store"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = json.loads(proc.stdout.strip().splitlines()[-1])
    assert error["type"] == "error" and error["step"] == component and error["code"] == "InvalidSpec"


def test_the_pack_image_packs_the_example_data_into_a_mounted_store(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    os.chmod(store, 0o777)  # written by uid 10001
    spec = {
        "apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun", "metadata": {"name": "smoke"},
        "spec": {
            "model": {"hf": "HuggingFaceTB/SmolLM2-135M-Instruct"},
            "data": {"sources": [{"path": "data/qa.jsonl", "format": "openai_chat"}]},
            "steps": {"pack": {"format": "openai_chat", "split": {"train": 0.8, "val": 0.1, "test": 0.1}}},
        },
    }
    proc = run("pack", env={"FT_SPEC": json.dumps(spec), "FT_STORE_URI": "file:///store", "FT_BASE_DIR": "/project",
                            "FT_SCRATCH": "/tmp/scratch"},
               volumes=[f"{ROOT / 'examples'}:/project:ro", f"{store}:/store"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    manifest = json.loads((store / "runs/default/smoke/pack/_manifest.json").read_text())
    assert {"train.jsonl", "val.jsonl", "test.jsonl"} <= {Path(f["path"]).name for f in manifest["files"]}
    rows = (store / "runs/default/smoke/pack/train.jsonl").read_text().splitlines()
    assert len(rows) > 10 and all("messages" in json.loads(r) for r in rows)


def test_the_controller_image_answers_help_without_a_cluster():
    proc = run("controller", "--help")
    assert proc.returncode == 0 and "--namespace" in proc.stdout, proc.stderr
