"""Store keys: the only names the store accepts.

A key is a '/'-joined path of segments made of letters, digits, '.', '_' and '-'.
No empty segment, no '.' or '..', nothing absolute. Every key a step writes is
built under its run's prefix, `runs/<namespace>/<run>/`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from jobs.common.errors import InvalidKey

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")
MAX_KEY = 1024


def validate_key(key: str) -> str:
    """Return `key` if it is a safe store key, else raise InvalidKey naming the problem."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("store key: empty")
    if len(key) > MAX_KEY:
        raise InvalidKey(f"store key: longer than {MAX_KEY} characters")
    if key.startswith("/"):
        raise InvalidKey(f"store key {key!r}: absolute paths are not allowed")
    for seg in key.split("/"):
        if seg in ("", ".", ".."):
            raise InvalidKey(f"store key {key!r}: empty, '.' or '..' segment")
        if not _SEGMENT.fullmatch(seg):  # fullmatch: `$` alone lets a trailing newline in
            raise InvalidKey(
                f"store key {key!r}: segment {seg!r} may hold only letters, digits, '.', '_', '-'"
            )
    return key


def join(*parts: str) -> str:
    return validate_key("/".join(p.strip("/") for p in parts if p))


def run_prefix(namespace: str, run: str) -> str:
    return join("runs", namespace, run)


def step_prefix(namespace: str, run: str, step: str) -> str:
    return join("runs", namespace, run, step)


def cache_prefix(step: str, key: str) -> str:
    return join("cache", step, key)


def under(prefix: str, key: str) -> bool:
    return key == prefix or key.startswith(prefix.rstrip("/") + "/")


def validate_store_uri(uri: str) -> tuple[str, str, str]:
    """Split a store URI into (scheme, bucket or root, prefix); raise InvalidKey when malformed."""
    try:
        parts = urlsplit(uri)
    except ValueError as err:  # e.g. an unclosed '[' reads as a broken IPv6 host
        raise InvalidKey(f"store URI {uri!r}: {err}") from None
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise InvalidKey(f"store URI {uri!r}: use file:///absolute/path")
        return "file", parts.path, ""
    if parts.scheme == "s3":
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", parts.netloc or ""):
            raise InvalidKey(f"store URI {uri!r}: bad bucket name {parts.netloc!r}")
        prefix = parts.path.strip("/")
        if prefix:
            validate_key(prefix)
        return "s3", parts.netloc, prefix
    raise InvalidKey(f"store URI {uri!r}: scheme must be file:// or s3://")
