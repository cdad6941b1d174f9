"""The HTTP backend against a real server on 127.0.0.1, and the in-process ASGI backend."""

from __future__ import annotations

import socket
import time

import pytest

from jobs.common.backends.asgi import asgi_backend
from jobs.common.backends.http import OpenAIChatBackend, api_key_from_env
from jobs.common.errors import InvalidInput, TransientError
from jobs.common.spec import Decoding, SecretKeyRef

from tests.conftest import REPO

Q = [{"role": "user", "content": "What is 2+2?"}]
GREEDY = Decoding()


def chats(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def test_answers_in_order_with_usage_and_latency(fake, endpoint):
    backend = OpenAIChatBackend(endpoint, "m", concurrency=3)
    seen = []
    replies = backend.generate([*chats(5), Q], Decoding(temperature=0.5, maxNewTokens=7), lambda i, r: seen.append(i))
    assert [r.text for r in replies] == [f"echo: q{i}" for i in range(5)] + ["4"]
    assert replies[-1].completion_tokens == 1 and replies[0].prompt_tokens == 1
    assert all(r.latency > 0 for r in replies)
    assert sorted(seen) == list(range(6))
    body = fake.bodies[-1] if fake.bodies[-1]["messages"] == Q else next(b for b in fake.bodies if b["messages"] == Q)
    assert body["model"] == "m" and body["temperature"] == 0.5 and body["max_tokens"] == 7 and body["top_p"] == 1.0


def test_concurrency_is_bounded(endpoint, fake):
    fake.latency = 0.05
    OpenAIChatBackend(endpoint, "m", concurrency=3).generate(chats(12), GREEDY)
    assert fake.calls == 12 and fake.max_inflight == 3


def test_429_and_5xx_are_retried_with_backoff(endpoint, fake):
    fake.fail_next(429)
    fake.fail_next(503)
    started = time.perf_counter()
    [reply] = OpenAIChatBackend(endpoint, "m", retries=3, backoff=0.05).generate([Q], GREEDY)
    assert reply.text == "4" and fake.calls == 3
    assert time.perf_counter() - started >= 0.05 * 0.5 + 0.1 * 0.5  # two backoff waits happened


def test_persistent_5xx_fails_after_bounded_retries(endpoint, fake):
    fake.fail_next(500, times=10)
    with pytest.raises(TransientError, match=r"answered 500 .*gave up after 3 attempt\(s\)"):
        OpenAIChatBackend(endpoint, "m", retries=2, backoff=0.01).generate([Q], GREEDY)
    assert fake.calls == 3


def test_401_is_not_retried_and_says_the_key_is_wrong(endpoint, fake, monkeypatch):
    fake.api_key = "right"
    monkeypatch.setenv("FT_ENDPOINT_API_KEY", "sk-bad-123")
    key, source = api_key_from_env(None)
    backend = OpenAIChatBackend(endpoint, "m", api_key=key, key_source=source, retries=5, backoff=0.01)
    with pytest.raises(InvalidInput) as err:
        backend.generate([Q], GREEDY)
    assert fake.calls == 1
    assert "rejected the API key (401" in str(err.value) and "key is wrong" in str(err.value)
    assert "FT_ENDPOINT_API_KEY" in str(err.value) and "sk-bad-123" not in str(err.value)
    assert err.value.code == "EndpointUnauthorized"


def test_key_comes_from_the_secret_key_env_and_is_sent(endpoint, fake, monkeypatch):
    fake.api_key = "s3cret"
    monkeypatch.delenv("FT_ENDPOINT_API_KEY", raising=False)
    ref = SecretKeyRef(name="llm-key", key="OPENAI_API_KEY")
    with pytest.raises(InvalidInput, match="neither env OPENAI_API_KEY .* nor FT_ENDPOINT_API_KEY"):
        api_key_from_env(ref)
    monkeypatch.setenv("OPENAI_API_KEY", "s3cret")
    key, source = api_key_from_env(ref)
    assert "secret llm-key" in source
    [reply] = OpenAIChatBackend(endpoint, "m", api_key=key).generate([Q], GREEDY)
    assert reply.text == "4"


def test_unreachable_endpoint_fails_clearly_after_retries():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIChatBackend(f"http://127.0.0.1:{port}/v1", "m", retries=2, backoff=0.01)
    with pytest.raises(TransientError) as err:
        backend.generate([Q], GREEDY)
    assert f"127.0.0.1:{port}/v1/chat/completions unreachable (ConnectError" in str(err.value)
    assert "gave up after 3 attempt(s)" in str(err.value)


def test_wrong_path_is_a_permanent_error_with_a_hint(endpoint, fake):
    with pytest.raises(InvalidInput, match=r"404 Not Found \(is baseUrl right"):
        OpenAIChatBackend(endpoint.removesuffix("/v1"), "m", retries=3).generate([Q], GREEDY)
    assert fake.calls == 0  # the fake counts only its chat route


def test_asgi_app_answers_in_process_without_a_server():
    from tests.eval import openai_fake

    before = openai_fake.service.calls
    backend = asgi_backend("tests.eval.openai_fake:app", search_dir=REPO, concurrency=2)
    replies = backend.generate(chats(3), GREEDY)
    assert [r.text for r in replies] == ["echo: q0", "echo: q1", "echo: q2"]
    assert openai_fake.service.calls - before == 3
    assert backend.identity == {"kind": "asgi", "app": "tests.eval.openai_fake:app", "model": "asgi"}


def test_asgi_app_that_does_not_exist_is_named():
    with pytest.raises(InvalidInput, match="has no ASGI app named 'nope'"):
        asgi_backend("tests.eval.openai_fake:nope", search_dir=REPO)
    with pytest.raises(InvalidInput, match="cannot import 'no_such_module'"):
        asgi_backend("no_such_module:app", search_dir=REPO)
