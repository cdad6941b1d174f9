"""A real MinIO server on 127.0.0.1 for the store's tests, started from the binary that
`make minio` builds from Go modules."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CACHE_BIN = Path(os.environ.get("FT_TOOLS_DIR", Path.home() / ".cache" / "finetune-operator" / "bin"))


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def minio_binary() -> Path | None:
    """FT_MINIO_BIN (what `make test` sets), else `minio` on PATH, else the newest one `make minio` cached."""
    named = os.environ.get("FT_MINIO_BIN") or shutil.which("minio")
    if named:
        return Path(named) if Path(named).is_file() else None
    cached = sorted(CACHE_BIN.glob("minio-*"), key=lambda p: p.stat().st_mtime)
    return cached[-1] if cached else None


def wait_live(endpoint: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"minio exited with {proc.returncode} before it was live")
        try:
            with urllib.request.urlopen(f"{endpoint}/minio/health/live", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"minio not live at {endpoint} after {timeout:.0f} s")


def start_minio(binary: Path, data: Path, log: Path, host: str = "127.0.0.1") -> tuple[S3Server, subprocess.Popen]:
    """MinIO listening on `host` only (loopback, or the test cluster's pod bridge)."""
    port, console = free_port(), free_port()
    server = S3Server(f"http://{host}:{port}", "ft-test-access", "ft-test-secret-key")
    env = {**os.environ, "MINIO_ROOT_USER": server.access_key, "MINIO_ROOT_PASSWORD": server.secret_key,
           "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "HOME": str(data)}
    proc = subprocess.Popen(
        [str(binary), "server", "--quiet", "--address", f"{host}:{port}",
         "--console-address", f"127.0.0.1:{console}", str(data / "export")],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        wait_live(server.endpoint, proc)
    except BaseException:
        proc.kill()
        raise
    return server, proc
