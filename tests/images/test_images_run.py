"""The images, built for real and run the way the Job builder runs them: numeric non-root uid,
read-only root with a tmpfs /tmp, no capabilities, no new privileges, no network.

`make images-smoke` builds the torch-free three from the local base (images/base.sh), tag smoke;
`make images-local` builds all five, tag local, and runs this file with FT_IMAGE_TAG=local.
Without a Docker engine these tests skip, unless FT_REQUIRE_DOCKER=1 makes that a failure (CI
sets it); the torch images' tests skip where those are not built, unless
FT_REQUIRE_TORCH_IMAGES=1 (set by `make images-local`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.train.trainkit import chat_rows, make_run, smollm2_tokenizer_dir, tiny_llama  # noqa: F401

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


# The image each step runs in (controller/settings.py: evaluate shares the train image).
STEP_IMAGES = {"pack": "pack", "eval": "eval", "train": "train", "evaluate": "train", "gguf": "gguf"}
TORCH_IMAGES = {"train", "gguf"}


def image(component: str) -> str:
    name = f"{PREFIX}/{component}:{TAG}"
    if subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode != 0:
        if component in TORCH_IMAGES and os.environ.get("FT_REQUIRE_TORCH_IMAGES") != "1":
            pytest.skip(f"{name} is not built (`make images-local` builds the torch images)")
        pytest.fail(f"{name} is not built: run `make images-{'local' if component in TORCH_IMAGES else 'smoke'}`")
    return name


def run(component: str, *args: str, env: dict[str, str] | None = None, volumes: list[str] = (),
        entrypoint: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["docker", "run", "--rm", *HARDENED]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    for v in volumes:
        cmd += ["-v", v]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    return subprocess.run([*cmd, image(component), *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("step", STEP_IMAGES)
def test_a_bad_spec_exits_2_with_the_json_error_line(step):
    # the command the Job builder gives every step pod (controller/jobs.py)
    proc = run(STEP_IMAGES[step], "-m", f"jobs.{step}", entrypoint="python",
               env={"FT_SPEC": '{"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun"}',
                    "FT_STORE_URI": "file:///tmp/store"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = json.loads(proc.stdout.strip().splitlines()[-1])
    assert error["type"] == "error" and error["step"] == step and error["code"] == "InvalidSpec"


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


@pytest.fixture(scope="session")
def train_image() -> str:
    """Skips (or fails) before the tiny model is built when the image is not there."""
    return image("train")


def test_the_train_image_trains_a_tiny_model_into_a_mounted_store(train_image, make_run, tiny_llama):
    """The real train step (LoRA, two steps) on a 2-layer random Llama, in the image."""
    run_ = make_run(model={"hf": "/model"}, splits={"train": chat_rows(8), "val": chat_rows(2), "test": chat_rows(2)},
                    train={"maxSteps": 2, "batchSize": 2, "learningRate": 0.01, "maxLength": 64,
                           "lora": {"r": 4, "alpha": 8, "dropout": 0.0}})
    store = run_.tmp / "store"
    subprocess.run(["chmod", "-R", "a+rwX", str(store)], check=True)  # written by uid 10001
    subprocess.run(["chmod", "-R", "a+rX", str(tiny_llama)], check=True)  # read by uid 10001
    proc = run("train", env={"FT_SPEC": Path(run_.env["FT_SPEC_FILE"]).read_text(), "FT_STORE_URI": "file:///store",
                             "FT_SCRATCH": "/tmp/scratch", "FT_PROGRESS_INTERVAL": "0", "HF_HUB_OFFLINE": "1"},
               volumes=[f"{tiny_llama}:/model:ro", f"{store}:/store"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    manifest = json.loads(run_.read("_manifest.json"))
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json", "metrics.jsonl"} <= {
        f["path"] for f in manifest["files"]}


def test_the_gguf_image_loads_llama_cpp_and_its_converter():
    """The prebuilt wheel's library loads (OpenMP present) and the converter of the same release
    is where the step looks for it, with nothing written outside /tmp."""
    code = ("import os, llama_cpp; from jobs.gguf.install import is_current; "
            "print(llama_cpp.__version__, is_current(__import__('pathlib').Path(os.environ['LLAMA_CPP_DIR']), "
            "llama_cpp.__version__), llama_cpp.llama_supports_mmap())")
    proc = run("gguf", "-c", code, entrypoint="python")
    assert proc.returncode == 0, proc.stderr[-2000:]
    version, current, _ = proc.stdout.split()
    assert version == _constraint("llama-cpp-python") and current == "True"


def _constraint(name: str) -> str:
    pins = dict(line.split("==", 1) for line in (ROOT / "images/constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    return pins.get(name) or pins[name.replace("-", "_")]
