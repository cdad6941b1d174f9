"""Artifact store: the S3 store's multipart, concurrent transfers against one plain PUT/GET.

    python -m bench.store            # a 1 GiB file
    python -m bench.store --quick    # a 256 MiB file

The server is moto's S3 server, its own process on 127.0.0.1. Each transfer runs in its
own child process (so its peak RSS is its own) and times only the transfer:
    store put / get    jobs.common.store.S3Store.put_file / get_file (boto3's transfer
                       manager: 16 MiB parts, 8 in flight)
    single PUT / GET   boto3 put_object with the open file as body; get_object streamed to disk
    sha256             jobs.common.artifacts.sha256_file, what a step pays to write a manifest
                       and what a reader pays to verify a download
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from bench import report
from jobs.common.store import MULTIPART_CHUNK

BUCKET = "bench"
KEY = "runs/bench/store/train/model.bin"
SIDES = ("single PUT", "store put", "store get", "single GET", "sha256")


# --- the sides, each in a child process -------------------------------------------------------------


def _client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def _transfer(side: str, path: Path) -> str | None:
    from jobs.common.artifacts import sha256_file
    from jobs.common.store import S3Store

    if side == "store put":
        S3Store(BUCKET).put_file(KEY, path)
    elif side == "store get":
        S3Store(BUCKET).get_file(KEY, path)
    elif side == "single PUT":
        with open(path, "rb") as f:
            _client().put_object(Bucket=BUCKET, Key=KEY, Body=f)
    elif side == "single GET":
        body = _client().get_object(Bucket=BUCKET, Key=KEY)["Body"]
        with open(path, "wb") as f:
            for chunk in body.iter_chunks(1 << 20):
                f.write(chunk)
    elif side == "sha256":
        return sha256_file(path)
    else:
        raise ValueError(side)
    return None


def child(argv: Sequence[str]) -> None:
    side, path = argv[0], Path(argv[1])
    import boto3  # noqa: F401  # imports are not the transfer

    import jobs.common.store  # noqa: F401

    started = time.perf_counter()
    digest = _transfer(side, path)
    report.emit_result({"seconds": time.perf_counter() - started, "peakRss": report.self_peak_rss(), "sha256": digest})


# --- the benchmark ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto's S3 server as a child process; its peak RSS is read when it is stopped."""

    def __init__(self) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=report.python_env(),
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.2)
        self.sampler = report.TreeSampler(self.proc.pid, every=0.25)
        self.peak_rss = 0

    def stop(self) -> None:
        self.sampler.sample()
        self.peak_rss = self.sampler.stop()
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)


def make_file(path: Path, size: int) -> str:
    """`size` random bytes (incompressible, unlike zeros); returns their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 64 * report.MiB))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


def measure(size: int) -> dict[str, Any]:
    import boto3

    server = MotoServer()
    env = report.python_env({"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "bench",
                             "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"})
    results: dict[str, dict[str, Any]] = {}
    try:
        client = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        client.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
            source = Path(tmp) / "source.bin"
            digest = make_file(source, size)
            for side in SIDES:
                target = source if side in ("single PUT", "store put", "sha256") else Path(tmp) / "down.bin"
                proc = report.run_python("bench.store", "--child", side, str(target), env=env, timeout=3600)
                results[side] = proc.result()
                print(f"store: {side}: {results[side]['seconds']:.2f}s", file=sys.stderr)
                if side == "single PUT":  # the next upload starts from an empty bucket
                    client.delete_object(Bucket=BUCKET, Key=KEY)
                if side.endswith("GET") or side.endswith("get"):
                    got = report.run_python("bench.store", "--child", "sha256", str(target), env=env).result()
                    if got["sha256"] != digest:
                        raise RuntimeError(f"{side}: the downloaded file differs from the uploaded one")
                    target.unlink()
            if results["sha256"]["sha256"] != digest:
                raise RuntimeError("sha256_file disagrees with hashlib on the source file")
    finally:
        server.stop()
    return {"size": size, "results": results, "serverPeakRss": server.peak_rss}


def build_section(m: dict[str, Any]) -> report.Section:
    size, r = m["size"], m["results"]
    mbps = {side: size / 1e6 / r[side]["seconds"] for side in SIDES}
    rows = [[side, report.fmt_s(r[side]["seconds"]), f"{mbps[side]:.0f} MB/s", report.fmt_mib(r[side]["peakRss"])]
            for side in SIDES]
    sha = r["sha256"]["seconds"]
    up = r["single PUT"]["seconds"] / r["store put"]["seconds"]
    down = r["single GET"]["seconds"] / r["store get"]["seconds"]
    meaning = (
        f"For a {size / report.GiB:g} GiB file, the store's multipart transfers run {report.fmt_x(up)} the speed of "
        f"one PUT on upload and {report.fmt_x(down)} the speed of one GET on download. Checksums cost "
        f"{report.fmt_s(sha)} per pass ({mbps['sha256']:.0f} MB/s): {sha / r['store put']['seconds']:.0%} on top of "
        f"the upload (the manifest's sha256) and {sha / r['store get']['seconds']:.0%} on top of the download "
        f"(verification)."
    )
    parts = -(-size // MULTIPART_CHUNK)
    notes = [
        f"Both ends are on this machine (moto's S3 server, peak RSS {report.fmt_mib(m['serverPeakRss'])}, shares the "
        "2 cores with the client), so these are CPU-bound figures, not network ones: against a remote S3 or MinIO "
        "the multipart speed-up comes from parallel connections hiding per-connection latency and bandwidth limits. "
        f"moto answers a ranged GET by building the whole object and slicing it (moto/s3/responses.py, "
        f"_handle_range_header), so the store's download in {parts} ranged parts of {MULTIPART_CHUNK // report.MiB} MiB "
        f"reads the object {parts} times here; S3 and MinIO serve a range without reading the rest."
    ]
    return report.Section(
        title="Artifact store (S3, moto server)",
        columns=["transfer", "time", "throughput", "peak RSS"],
        rows=rows, meaning=meaning, notes=notes,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--size-mib", type=int, help="file size (default 1024; 256 with --quick)")
    args = p.parse_args(argv)
    size = (args.size_mib or (256 if args.quick else 1024)) * report.MiB
    where = report.machine()
    m = measure(size)
    report.publish(build_section(m), report.command_line("bench.store", argv), report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
