"""A real `ftctl serve` app on 127.0.0.1, driven only through the official openai client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.miniokit import free_port
from tests.train.trainkit import smollm2_tokenizer_dir, tiny_llama  # noqa: F401

KEY_A = "sk-tenant-a-0123456789abcdef"
KEY_B = "sk-tenant-b-0123456789abcdef"


def tiny_template(model_dir: Path) -> dict:
    """Pack + 4 LoRA steps of a 2-layer random Llama. No val split, so the run commits a checkpoint
    every checkpointEvery steps, as the train suite's resume tests do."""
    return {
        "models": {"tiny-llama": {"hf": str(model_dir), "name": "tiny-llama"}},
        "spec": {"steps": {
            "pack": {"format": "openai_chat", "split": {"train": 0.9, "val": 0.0, "test": 0.1},
                     "nearDupThreshold": None},
            "train": {"method": "sft", "lora": {"r": 4, "alpha": 8, "dropout": 0}, "learningRate": 0.001,
                      "maxSteps": 4, "batchSize": 2, "maxLength": 64, "checkpointEvery": 2},
        }},
    }


@contextmanager
def serving(template: dict, root: Path, max_upload_bytes: int = 64 * 1024) -> Iterator[str]:
    """The API app under uvicorn on a free 127.0.0.1 port, with tenants team-a and team-b; its /v1 URL."""
    import uvicorn

    from jobs.api.app import Settings, create_app
    from jobs.api.template import JobTemplate
    from jobs.api.tenants import KeyRing
    from jobs.common.store import open_store

    settings = Settings(
        store=open_store((root / "store").as_uri()),
        keyring=KeyRing({KEY_A: "team-a", KEY_B: "team-b"}),
        template=JobTemplate(template, "test template"),
        work_root=root / "work",
        max_upload_bytes=max_upload_bytes,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "the API server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def api_base(tmp_path_factory, tiny_llama) -> Iterator[str]:  # noqa: F811
    with serving(tiny_template(tiny_llama), tmp_path_factory.mktemp("api")) as base:
        yield base


@pytest.fixture
def client_a(api_base):
    from openai import OpenAI

    return OpenAI(base_url=api_base, api_key=KEY_A, max_retries=0)


@pytest.fixture
def client_b(api_base):
    from openai import OpenAI

    return OpenAI(base_url=api_base, api_key=KEY_B, max_retries=0)
