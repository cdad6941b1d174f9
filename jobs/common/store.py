"""The artifact store: a flat key space over a directory or an S3 bucket.

Two backends behind one small interface, chosen by URI scheme. Both write
atomically: a reader sees a whole object or none. Manifests, checksums and the
commit protocol live in `jobs.common.artifacts`, on top of this.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol, TypeVar

from jobs.common.errors import TransientError
from jobs.common.keys import validate_key, validate_store_uri

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store(Protocol):
    uri: str

    def put_file(self, key: str, local: Path) -> None: ...
    def get_file(self, key: str, local: Path) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def size(self, key: str) -> int | None: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...


def open_store(uri: str) -> Store:
    scheme, root, prefix = validate_store_uri(uri)
    if scheme == "file":
        return FileStore(Path(root))
    return S3Store(root, prefix)


def delete_prefix(store: Store, prefix: str) -> int:
    keys = store.list(prefix)
    for key in keys:
        store.delete(key)
    return len(keys)


# --- file:// -----------------------------------------------------------------------------------


class FileStore:
    def __init__(self, root: Path):
        self.root = root
        self.uri = root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _atomic_write(self, key: str, fill: Callable[[Path], None]) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        os.close(fd)
        try:
            fill(Path(tmp))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, local: Path) -> None:
        self._atomic_write(key, lambda tmp: shutil.copyfile(local, tmp))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(key, lambda tmp: tmp.write_bytes(data))

    def get_file(self, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(key), local)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        out = []
        for p in base.rglob("*"):
            if p.is_file() and not p.name.startswith(".tmp-"):
                out.append(p.relative_to(self.root).as_posix())
        return sorted(out)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


# --- s3:// -------------------------------------------------------------------------------------

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024


def _retrying(what: str, fn: Callable[[], T], attempts: int, base_delay: float) -> T:
    """Retry connection-level failures with exponential backoff, then raise TransientError."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnError
    from boto3.exceptions import S3UploadFailedError

    transient = (BotoConnError, S3UploadFailedError, BotoCoreError, OSError)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status < 500 and status != 429:
                raise
            last: Exception = err
        except transient as err:
            last = err
        if attempt < attempts:
            delay = base_delay * 2 ** (attempt - 1)
            log.warning("store: %s failed (%s); retry %d/%d in %.1fs", what, last, attempt, attempts - 1, delay)
            time.sleep(delay)
    raise TransientError(f"store unavailable: {what} failed after {attempts} attempts: {last}")


class S3Store:
    """S3 through boto3. Endpoint, region and credentials come from the environment
    (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...), never from the spec."""

    def __init__(self, bucket: str, prefix: str = ""):
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self.uri = f"s3://{bucket}/{prefix}".rstrip("/")
        self.attempts = int(os.environ.get("FT_STORE_ATTEMPTS", "5"))
        self.base_delay = float(os.environ.get("FT_STORE_RETRY_DELAY", "1.0"))
        self.client = boto3.client(
            "s3",
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            region_name=os.environ.get("AWS_REGION", "us-east-1"),
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                s3={"addressing_style": "path"},
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNK,
            max_concurrency=int(os.environ.get("FT_STORE_CONCURRENCY", "8")),
        )

    def _k(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        return _retrying(what, fn, self.attempts, self.base_delay)

    def put_file(self, key: str, local: Path) -> None:
        # An S3 object appears whole or not at all; a failed multipart upload is aborted.
        self._retry(
            f"upload {key}",
            lambda: self.client.upload_file(str(local), self.bucket, self._k(key), Config=self.transfer),
        )

    def put_bytes(self, key: str, data: bytes) -> None:
        self._retry(
            f"put {key}", lambda: self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data)
        )

    def get_file(self, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".tmp-{local.name}")

        def download() -> None:
            self.client.download_file(self.bucket, self._k(key), str(tmp), Config=self.transfer)
            os.replace(tmp, local)

        try:
            self._retry(f"download {key}", download)
        finally:
            tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        def get() -> bytes | None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()
            except ClientError as err:
                if err.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    return None
                raise

        return self._retry(f"get {key}", get)

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        def head() -> int | None:
            try:
                return self.client.head_object(Bucket=self.bucket, Key=self._k(key))["ContentLength"]
            except ClientError as err:
                if err.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise

        return self._retry(f"head {key}", head)

    def _pages(self, prefix: str) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        yield from paginator.paginate(Bucket=self.bucket, Prefix=self._k(prefix).rstrip("/") + "/")

    def list(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0

        def collect() -> list[str]:
            return sorted(o["Key"][strip:] for page in self._pages(prefix) for o in page.get("Contents", []))

        return self._retry(f"list {prefix}", collect)

    def versions(self, key: str) -> list[tuple[str, str, int]]:
        """(key, ETag, size) of the object `key` and of the objects under `key`/, sorted: what
        changes when any of them is overwritten, without reading them."""
        full = self._k(key).rstrip("/")
        strip = len(self.prefix) + 1 if self.prefix else 0

        def collect() -> list[tuple[str, str, int]]:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            return sorted(
                (o["Key"][strip:], o["ETag"].strip('"'), o["Size"])
                for page in pages
                for o in page.get("Contents", [])
                if o["Key"] == full or o["Key"].startswith(full + "/")
            )

        return self._retry(f"list {key}", collect)

    def delete(self, key: str) -> None:
        self._retry(f"delete {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=self._k(key)))
