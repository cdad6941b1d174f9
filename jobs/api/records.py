"""Files and job records of each tenant, kept in the artifact store under api/<namespace>/.

File content is stored as uploaded (`files/<id>/<id>.jsonl`) with its metadata beside it; a job is one
JSON record (`jobs/<id>.json`) holding its events and checkpoints, rewritten atomically on change.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

from jobs.common import keys
from jobs.common.store import Store


def new_id(prefix: str) -> str:
    """A unique id that sorts in creation order: nanoseconds (16 hex digits until 2554), then random."""
    return f"{prefix}-{time.time_ns():016x}{secrets.token_hex(6)}"


class Records:
    def __init__(self, store: Store):
        self.store = store
        self.lock = threading.RLock()

    # --- files -------------------------------------------------------------------------------

    def _file_prefix(self, ns: str, file_id: str) -> str:
        return keys.join("api", ns, "files", file_id)

    def _content_key(self, ns: str, file_id: str, form: str = "") -> str:
        # Named by the id: pack names each row <file>:<line>, so a job's two files need two names.
        return keys.join(self._file_prefix(ns, file_id), f"{file_id}{'.' + form if form else ''}.jsonl")

    def add_file(self, ns: str, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        file_id = new_id("file")
        meta = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed", "expires_at": None,
                "status_details": None}
        prefix = self._file_prefix(ns, file_id)
        self.store.put_bytes(self._content_key(ns, file_id), data)
        self.store.put_bytes(keys.join(prefix, "file.json"), json.dumps(meta).encode())  # last: the file exists
        return meta

    def file(self, ns: str, file_id: str) -> dict[str, Any] | None:
        if not _safe_id(file_id):
            return None
        raw = self.store.get_bytes(keys.join(self._file_prefix(ns, file_id), "file.json"))
        return json.loads(raw) if raw else None

    def file_uri(self, ns: str, file_id: str) -> str:
        return f"{self.store.uri.rstrip('/')}/{self._content_key(ns, file_id)}"

    def put_derived(self, ns: str, file_id: str, form: str, data: bytes) -> str:
        """A form of an uploaded file made for a run (e.g. converted rows), kept beside it; its URI."""
        key = self._content_key(ns, file_id, form)
        self.store.put_bytes(key, data)
        return f"{self.store.uri.rstrip('/')}/{key}"

    def file_content(self, ns: str, file_id: str) -> bytes | None:
        return self.store.get_bytes(self._content_key(ns, file_id))

    def files(self, ns: str) -> list[dict[str, Any]]:
        found = [k for k in self.store.list(keys.join("api", ns, "files")) if k.endswith("/file.json")]
        metas = [json.loads(self.store.get_bytes(k) or b"null") for k in found]
        return sorted((m for m in metas if m), key=lambda m: m["id"])

    def delete_file(self, ns: str, file_id: str) -> None:
        prefix = self._file_prefix(ns, file_id)
        self.store.delete(keys.join(prefix, "file.json"))  # first: the file is gone even if the rest fails
        for key in self.store.list(prefix):
            self.store.delete(key)

    # --- jobs --------------------------------------------------------------------------------

    def _job_key(self, ns: str, job_id: str) -> str:
        return keys.join("api", ns, "jobs", f"{job_id}.json")

    def save_job(self, ns: str, job: dict[str, Any]) -> None:
        with self.lock:
            self.store.put_bytes(self._job_key(ns, job["id"]), json.dumps(job).encode())

    def job(self, ns: str, job_id: str) -> dict[str, Any] | None:
        if not _safe_id(job_id):
            return None
        raw = self.store.get_bytes(self._job_key(ns, job_id))
        return json.loads(raw) if raw else None

    def jobs(self, ns: str) -> list[dict[str, Any]]:
        found = [k for k in self.store.list(keys.join("api", ns, "jobs")) if k.endswith(".json")]
        records = [json.loads(self.store.get_bytes(k) or b"null") for k in found]
        return sorted((r for r in records if r), key=lambda r: r["id"])

    def update_job(self, ns: str, job_id: str, change) -> dict[str, Any]:
        """Read, change (a function of the record) and write back one job under the lock."""
        with self.lock:
            job = self.job(ns, job_id)
            change(job)
            self.save_job(ns, job)
            return job


def _safe_id(ident: str) -> bool:
    # ids become store keys; anything but our own id alphabet is simply not found
    return ident.replace("-", "").isalnum() and ident.isascii() and len(ident) <= 64


def add_event(job: dict[str, Any], message: str, *, level: str = "info", type: str = "message",
              data: dict[str, Any] | None = None) -> None:
    number = len(job["events"]) + 1
    job["events"].append({"id": f"ftevent-{job['id'].removeprefix('ftjob-')}-{number:06d}",
                          "object": "fine_tuning.job.event", "created_at": int(time.time()), "level": level,
                          "message": message, "data": data or {}, "type": type})


def page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """A cursor page, OpenAI style: `items` newest first, `after` an id of the previous page."""
    start = 0
    if after is not None:
        ids = [i["id"] for i in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    chunk = items[start:start + limit]
    return {"object": "list", "data": chunk, "has_more": start + limit < len(items),
            "first_id": chunk[0]["id"] if chunk else None, "last_id": chunk[-1]["id"] if chunk else None}
