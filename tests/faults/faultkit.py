"""Tools for fault injection: an S3 server that can vanish and come back on the same port,
pack projects, and helpers to run steps as real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Relay:
    """A TCP relay on a fixed port. `close()` refuses new connections and resets the open ones,
    which is what clients see when a server host or its network goes away mid-request."""

    def __init__(self, port: int, target: int):
        self.port, self.target = port, target
        self.listener: socket.socket | None = None
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.flowing = threading.Event()
        self.flowing.set()

    def open(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            conns, self.conns = self.conns, set()
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
                c.shutdown(socket.SHUT_RDWR)  # wakes the relay thread blocked in recv()
                c.close()
            except OSError:
                pass


class FlakyS3:
    """moto's S3 server behind a relay on a fixed port. `stop()` stops the moto server and drops
    the endpoint off the network (in-flight requests are reset, new ones refused); `start()`
    brings both back on the same port. moto keeps its state in this process' memory, so
    buckets, objects and open multipart uploads survive the restart, like a real S3 outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._moto_port = free_port()
        self._relay = _Relay(self.port, self._moto_port)
        self._server = None
        self.up = False

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._moto_port, verbose=False)
        self._server.start()
        self._relay.open()
        self.up = True

    def hold(self) -> None:
        """Stall every transfer where it is (bytes stop flowing; connections stay open)."""
        self._relay.flowing.clear()

    def release(self) -> None:
        self._relay.flowing.set()

    def stop(self) -> None:
        self.up = False
        self.release()
        self._relay.close()
        if self._server is not None:
            self._server.stop()
            self._server._server.server_close()  # stop() leaves the listening socket bound
            self._server = None

    def multipart_parts(self, bucket: str) -> int:
        """Parts uploaded so far to open multipart uploads (read from moto's in-process state)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        b = s3_backends[DEFAULT_ACCOUNT_ID]["global"].buckets.get(bucket)
        return sum(len(m.parts) for m in b.multiparts.values()) if b else 0


def interruptible() -> None:
    """Popen's preexec_fn: SIGINT back to its default in the child. A job a non-interactive shell
    starts in the background inherits SIGINT ignored, and a Python started so never raises
    KeyboardInterrupt: a Ctrl-C test would then watch the run finish instead."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def in_thread(fn: Callable[[], Any]) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def wait_for(check: Callable[[], Any], timeout: float = 60, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise TimeoutError("condition not reached")


# --- a pack project ---------------------------------------------------------------------------


def chat_row(i: int) -> dict[str, Any]:
    return {
        "id": f"row-{i}",
        "messages": [
            {"role": "user", "content": f"Question {i}: what do you get when you add {i} and {i * 7 + 3}?"},
            {"role": "assistant", "content": f"Adding {i} and {i * 7 + 3} gives {i * 8 + 3}; that is the sum."},
        ],
    }


def write_rows(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(chat_row(i)) + "\n")
    return path


def pack_spec(name: str, sources: list[dict[str, Any]], steps: dict[str, Any] | None = None, **spec: Any) -> dict:
    return {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": name, "namespace": "faults"},
        "spec": {
            "model": {"gguf": "models/base.gguf"},
            "data": {"sources": sources},
            # Exact dedupe only: near-duplicate search over 200k rows would dominate the run time.
            "steps": steps or {"pack": {"nearDupThreshold": None}},
            **spec,
        },
    }


def step_env(spec_file: Path, store_uri: str, work: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FT_")}
    env.update(
        FT_SPEC_FILE=str(spec_file),
        FT_STORE_URI=store_uri,
        FT_BASE_DIR=str(spec_file.parent),
        FT_SCRATCH=str(work),
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def start_step(step: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", f"jobs.{step}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(log, "wb"),
        text=True,
    )
