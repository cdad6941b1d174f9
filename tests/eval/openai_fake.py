"""A small OpenAI-compatible chat server for tests and benchmarks.

It answers `POST /v1/chat/completions` from a table (last user message ->
answer, or an HTTP status to fail with; else a reply function's answer or an echo), after a fixed latency, and counts the calls. It can
require an API key and fail the next N calls with a status (429, 500, ...).
The same service is reachable over real HTTP on 127.0.0.1 (`serve`) and as an
ASGI app (`service.asgi`) for in-process use.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator


class FakeOpenAI:
    def __init__(
        self,
        answers: dict[str, str | int] | None = None,
        latency: float = 0.0,
        api_key: str | None = None,
        reply: Callable[[str], str] | None = None,
    ):
        self.answers = dict(answers or {})
        self.reply = reply  # last user message -> answer, for questions not in the table (a judge's grading)
        self.latency = latency
        self.api_key = api_key
        self.calls = 0
        self.inflight = 0
        self.max_inflight = 0
        self.bodies: list[dict[str, Any]] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures += [status] * times

    def respond(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        if path.rstrip("/") != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}
        with self._lock:
            self.calls += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            failure = self._failures.pop(0) if self._failures else None
        try:
            if self.latency:
                time.sleep(self.latency)
        finally:
            with self._lock:
                self.inflight -= 1
        if self.api_key and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
        if failure:
            return failure, {"error": {"message": f"injected {failure}"}}
        body = json.loads(raw)
        with self._lock:
            self.bodies.append(body)
        question = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        answer = self.answers.get(question, self.reply(question) if self.reply else f"echo: {question}")
        if isinstance(answer, int):  # a question this server always fails on
            return answer, {"error": {"message": f"cannot answer {question!r}"}}
        return 200, {
            "id": f"chatcmpl-{self.calls}",
            "object": "chat.completion",
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(question.split()), "completion_tokens": len(answer.split())},
        }

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status, payload = self.respond(scope["path"], headers, raw)
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


@contextmanager
def serve(service: FakeOpenAI) -> Iterator[str]:
    """Serve `service` on 127.0.0.1; yields the base URL (ending in /v1)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes; Nagle would hold the second

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = service.respond(self.path, headers, raw)
            body = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on this request (a cancelled batch)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


# The app `asgi: openai_fake:app` names in tests.
service = FakeOpenAI()
app = service.asgi
