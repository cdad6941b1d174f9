"""Step outputs: files plus a `_manifest.json` written last.

A step's output exists if and only if its manifest exists. The writer first
removes an old manifest (so a re-run never leaves a stale one pointing at files
being replaced), uploads files, and commits by writing the manifest. Readers go
through the manifest and verify every file's sha256.

A committed step is also recorded in the content-addressed cache,
`cache/<step>/<key>/_manifest.json`, which lists the same file keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jobs.common import keys
from jobs.common.errors import IntegrityError, MissingInput
from jobs.common.store import Store

log = logging.getLogger(__name__)
MANIFEST = "_manifest.json"
CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StepWriter:
    """Writes one step's output under `runs/<ns>/<run>/<step>/` and commits it."""

    def __init__(self, store: Store, namespace: str, run: str, step: str):
        self.store = store
        self.step = step
        self.prefix = keys.step_prefix(namespace, run, step)
        self.namespace, self.run = namespace, run
        self.files: list[dict[str, Any]] = []
        self.started = time.time()

    def begin(self) -> None:
        """Un-commit any earlier output before a single new byte is written."""
        self.store.delete(keys.join(self.prefix, MANIFEST))

    def add_file(self, rel: str, local: Path) -> dict[str, Any]:
        key = keys.join(self.prefix, rel)
        if rel == MANIFEST or not keys.under(self.prefix, key):
            raise MissingInput(f"output name {rel!r} is not allowed")
        entry = {"path": rel, "key": key, "size": local.stat().st_size, "sha256": sha256_file(local)}
        self.store.put_file(key, local)
        self.files = [f for f in self.files if f["path"] != rel] + [entry]
        return entry

    def add_dir(self, rel: str, local_dir: Path) -> None:
        for p in sorted(local_dir.rglob("*")):
            if p.is_file():
                self.add_file(f"{rel}/{p.relative_to(local_dir).as_posix()}".lstrip("/"), p)

    def add_json(self, rel: str, obj: Any, scratch: Path) -> None:
        local = scratch / rel
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(json.dumps(obj, indent=2, ensure_ascii=False))
        self.add_file(rel, local)

    def commit(
        self,
        *,
        input_key: str,
        code_version: str,
        metrics: dict[str, Any] | None = None,
        outputs: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        finished = time.time()
        manifest = {
            "step": self.step,
            "namespace": self.namespace,
            "run": self.run,
            "inputKey": input_key,
            "codeVersion": code_version,
            "committedAt": now_iso(),
            "timings": {"seconds": round(finished - self.started, 3)},
            "metrics": metrics or {},
            "outputs": outputs or {},
            "files": sorted(self.files, key=lambda f: f["path"]),
            "cached": False,
            **(extra or {}),
        }
        body = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
        self.store.put_bytes(keys.join(self.prefix, MANIFEST), body)
        self.store.put_bytes(keys.join(keys.cache_prefix(self.step, input_key), MANIFEST), body)
        return manifest


def read_manifest(store: Store, namespace: str, run: str, step: str) -> dict[str, Any] | None:
    raw = store.get_bytes(keys.join(keys.step_prefix(namespace, run, step), MANIFEST))
    return json.loads(raw) if raw is not None else None


def require_manifest(store: Store, namespace: str, run: str, step: str) -> dict[str, Any]:
    manifest = read_manifest(store, namespace, run, step)
    if manifest is None:
        raise MissingInput(
            f"input from step {step!r} is missing: no committed output at "
            f"{keys.step_prefix(namespace, run, step)}/ (did the {step} step run?)"
        )
    return manifest


def fetch(store: Store, manifest: dict[str, Any], dest: Path, only: str | None = None) -> Path:
    """Download a step's files into `dest`, verifying each sha256. `only` limits to a sub-path."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in manifest["files"]:
        if only and not keys.under(only, entry["path"]):
            continue
        local = dest / entry["path"]
        if local.exists() and local.stat().st_size == entry["size"] and sha256_file(local) == entry["sha256"]:
            continue
        store.get_file(entry["key"], local)
        actual = sha256_file(local)
        if actual != entry["sha256"]:
            local.unlink(missing_ok=True)
            raise IntegrityError(
                f"checksum mismatch on {entry['key']} (from step {manifest['step']!r}): "
                f"manifest says sha256 {entry['sha256'][:16]}…, store has {actual[:16]}…; "
                "the store is corrupt, re-run that step"
            )
    return dest


def commit_tree(store: Store, prefix: str, local_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Upload a local folder under `prefix` and commit it with a `_manifest.json` written last.

    The step-output protocol for things that are not a step's output (training checkpoints,
    the dequantized-model cache): readers go through `read_tree` and `fetch`, so a folder
    whose upload was cut off is never used. `meta` must name the "step" that wrote it.
    """
    store.delete(keys.join(prefix, MANIFEST))
    files = []
    for p in sorted(local_dir.rglob("*")):
        if p.is_file():
            rel = p.relative_to(local_dir).as_posix()
            key = keys.join(prefix, rel)
            files.append({"path": rel, "key": key, "size": p.stat().st_size, "sha256": sha256_file(p)})
            store.put_file(key, p)
    manifest = {**meta, "committedAt": now_iso(), "files": files}
    store.put_bytes(keys.join(prefix, MANIFEST), json.dumps(manifest, indent=2).encode())
    return manifest


def read_tree(store: Store, prefix: str) -> dict[str, Any] | None:
    """The manifest of a folder committed with `commit_tree`, or None when it is not committed."""
    raw = store.get_bytes(keys.join(prefix, MANIFEST))
    return json.loads(raw) if raw is not None else None


def delete_tree(store: Store, prefix: str) -> None:
    """Un-commit first, then remove the files, so a reader never sees a half-deleted folder."""
    store.delete(keys.join(prefix, MANIFEST))
    for key in store.list(prefix):
        store.delete(key)


def lookup_cache(store: Store, step: str, key: str) -> dict[str, Any] | None:
    """A committed cache entry whose files are all still present with their sizes, else None."""
    raw = store.get_bytes(keys.join(keys.cache_prefix(step, key), MANIFEST))
    if raw is None:
        return None
    manifest = json.loads(raw)
    for entry in manifest["files"]:
        if store.size(entry["key"]) != entry["size"]:
            log.info("cache entry %s/%s is stale (%s changed); running the step", step, key[:12], entry["key"])
            return None
    return manifest


def adopt_cached(store: Store, namespace: str, run: str, step: str, cached: dict[str, Any]) -> dict[str, Any]:
    """Commit a cache hit as this run's output for `step`, without copying files."""
    manifest = dict(cached)
    own = manifest.get("namespace") == namespace and manifest.get("run") == run
    manifest.update(
        {
            "namespace": namespace,
            "run": run,
            "cached": True,
            "cachedFrom": None if own else f"{manifest.get('namespace')}/{manifest.get('run')}",
            "adoptedAt": now_iso(),
        }
    )
    store.put_bytes(keys.join(keys.step_prefix(namespace, run, step), MANIFEST), json.dumps(manifest, indent=2).encode())
    return manifest
