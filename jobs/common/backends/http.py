"""An OpenAI-compatible chat endpoint (`POST {baseUrl}/chat/completions`) over httpx.

Requests run concurrently up to `concurrency`. Connection errors, timeouts, 429
and 5xx are retried with exponential backoff (honouring Retry-After); 401/403
are not retried, since a wrong key stays wrong. The same class serves an ASGI
app in-process when given httpx's ASGITransport (see `asgi.py`).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any, Sequence

import httpx

from jobs.common.backends.base import Messages, OnReply, Reply
from jobs.common.errors import FtError, InvalidInput, TransientError
from jobs.common.spec import Decoding, SecretKeyRef

KEY_ENV = "FT_ENDPOINT_API_KEY"
MAX_DELAY = 30.0


def api_key_from_env(ref: SecretKeyRef | None) -> tuple[str | None, str]:
    """The API key and where it came from (for error messages; never the key itself).

    In a pod the Secret's key is mounted as an env var of the same name; locally
    either that variable or FT_ENDPOINT_API_KEY is read.
    """
    if ref is not None:
        if ref.key in os.environ:
            return os.environ[ref.key], f"env {ref.key} (secret {ref.name}, key {ref.key})"
        if KEY_ENV in os.environ:
            return os.environ[KEY_ENV], f"env {KEY_ENV}"
        raise InvalidInput(
            f"apiKeySecret: neither env {ref.key} (secret {ref.name}, key {ref.key}) nor {KEY_ENV} is set"
        )
    if KEY_ENV in os.environ:
        return os.environ[KEY_ENV], f"env {KEY_ENV}"
    return None, "no key was sent (set apiKeySecret or FT_ENDPOINT_API_KEY)"


def _detail(resp: httpx.Response) -> str:
    """The server's error message, short."""
    try:
        body = resp.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        text = err.get("message", str(err)) if isinstance(err, dict) else str(err)
    except ValueError:
        text = resp.text
    return " ".join(text.split())[:300]


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return min(float(resp.headers["retry-after"]), 60.0)
    except (KeyError, ValueError):
        return None


class OpenAIChatBackend:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        key_source: str = "",
        concurrency: int = 4,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
        identity: dict[str, Any] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.transport = transport
        self.key_source = key_source
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.identity = identity or {"kind": "endpoint", "baseUrl": self.base_url, "model": model}

    def generate(
        self, batch: Sequence[Messages], decoding: Decoding, on_reply: OnReply | None = None
    ) -> list[Reply]:
        return asyncio.run(self._generate(batch, decoding, on_reply))

    def close(self) -> None:
        pass  # each generate() opens and closes its own client

    async def _generate(self, batch: Sequence[Messages], decoding: Decoding, on_reply: OnReply | None) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(batch)
        gate = asyncio.Semaphore(self.concurrency)
        client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers,
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            transport=self.transport,
        )

        async def one(index: int, messages: Messages) -> None:
            async with gate:
                reply = await self._request(client, messages, decoding)
            replies[index] = reply
            if on_reply:
                on_reply(index, reply)

        try:
            async with client, asyncio.TaskGroup() as group:
                for i, messages in enumerate(batch):
                    group.create_task(one(i, messages))
        except ExceptionGroup as failures:  # the first failure cancelled the rest; report it
            first = next((e for e in failures.exceptions if isinstance(e, FtError)), failures.exceptions[0])
            raise first from None
        return replies  # type: ignore[return-value]

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        delay = min(self.backoff * 2**attempt, MAX_DELAY)
        return delay * random.uniform(0.5, 1.0)  # jitter, so concurrent retries do not stampede

    async def _request(self, client: httpx.AsyncClient, messages: Messages, decoding: Decoding) -> Reply:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": decoding.temperature,
            "top_p": decoding.top_p,
            "max_tokens": decoding.max_new_tokens,
        }
        url = f"{self.base_url}/chat/completions"
        started = time.perf_counter()
        attempts = self.retries + 1
        for attempt in range(attempts):
            retry_after = None
            try:
                resp = await client.post("chat/completions", json=body)
            except httpx.TransportError as err:
                failure = f"unreachable ({type(err).__name__}: {err})" if str(err) else f"unreachable ({type(err).__name__})"
            else:
                if resp.status_code == 200:
                    return self._parse(resp, url, time.perf_counter() - started)
                if resp.status_code in (401, 403):
                    raise InvalidInput(
                        f"{url} rejected the API key ({resp.status_code} {resp.reason_phrase}): "
                        f"the key is wrong or missing; key source: {self.key_source or 'none'}",
                        code="EndpointUnauthorized",
                    )
                if resp.status_code != 429 and resp.status_code < 500:
                    hint = " (is baseUrl right? it usually ends in /v1)" if resp.status_code == 404 else ""
                    raise InvalidInput(
                        f"{url} answered {resp.status_code} {resp.reason_phrase}{hint}: {_detail(resp)}",
                        code="EndpointRejected",
                    )
                failure = f"answered {resp.status_code} {resp.reason_phrase}: {_detail(resp)}"
                retry_after = _retry_after(resp)
            if attempt + 1 < attempts:
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise TransientError(f"{url} {failure}; gave up after {attempts} attempt(s)", code="EndpointUnavailable")

    @staticmethod
    def _parse(resp: httpx.Response, url: str, latency: float) -> Reply:
        try:
            data = resp.json()
            text = data["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise InvalidInput(
                f"{url} answered 200 but not with an OpenAI chat completion: {resp.text[:200]!r}",
                code="EndpointRejected",
            ) from None
        usage = data.get("usage") or {}
        return Reply(
            text=text,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency=latency,
        )
