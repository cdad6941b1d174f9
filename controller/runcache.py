"""The latest body of every watched run, so that a reconcile needs no GET of its run.

Fed by the watch (every run event) and by the controller's own writes (the API server
answers a patch with the run as written, which is newer than what the watch may still
be delivering). A reconcile works from this copy and writes status with its
resourceVersion as a precondition: if the run moved on meanwhile, the write is refused
(`kube.Conflict`), and the reconcile reads the run and starts over.

Only what a reconcile reads is kept (kopf's own annotations are large and not needed),
and of a finished run only its phase: a finished run is never acted on again.
"""

from __future__ import annotations

import threading
from typing import Any

from jobs.common.status import TERMINAL_PHASES

KEPT_METADATA = ("name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp", "labels")


def trimmed(body: Any, annotation: str) -> dict[str, Any]:
    """What a reconcile reads of a run: its metadata (with only `annotation` among its
    annotations), spec and status; of a finished run, only its metadata and phase."""
    meta = body.get("metadata") or {}
    kept = {k: meta[k] for k in KEPT_METADATA if k in meta}
    annotations = meta.get("annotations") or {}
    if annotation in annotations:
        kept["annotations"] = {annotation: annotations[annotation]}
    out = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": kept}
    status = body.get("status") or {}
    if status.get("phase") in TERMINAL_PHASES:
        out["status"] = {"phase": status["phase"]}
    else:
        out["spec"] = body.get("spec") or {}
        out["status"] = status
    return out


def is_older(version: str | None, than: str | None) -> bool:
    """Whether `version` is known to be older than `than`. resourceVersions are opaque; the
    API server's (etcd revisions) and the emulator's are integers, which say their order.
    Any other pair counts as not older: the status write's precondition catches a stale one."""
    if not version or not than or not version.isdigit() or not than.isdigit():
        return False
    return int(version) < int(than)


class RunCache:
    """Trimmed run bodies by (namespace, name); shared by the event loop and the reconcile
    threads, hence the lock."""

    def __init__(self, annotation: str) -> None:
        self.annotation = annotation
        self._bodies: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def put(self, body: Any) -> dict[str, Any]:
        """Keep `body` unless the copy held is newer; the copy now held."""
        new = trimmed(body, self.annotation)
        key = (new["metadata"].get("namespace", ""), new["metadata"].get("name", ""))
        with self._lock:
            held = self._bodies.get(key)
            if held is not None and is_older(new["metadata"].get("resourceVersion"), held["metadata"].get("resourceVersion")):
                return held
            self._bodies[key] = new
            return new

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._bodies.get((namespace, name))

    def drop(self, namespace: str, name: str) -> None:
        with self._lock:
            self._bodies.pop((namespace, name), None)

    def __len__(self) -> int:
        return len(self._bodies)
