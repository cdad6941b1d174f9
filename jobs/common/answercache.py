"""The answer cache: a model's reply to a chat, keyed by what determines it.

The eval step keeps its answers here, and the judge its verdicts (mode "judge").

key = sha256(messages + decoding options + backend identity + eval mode)

Entries live in the store as JSONL segments under
`cache/eval-answers/<scope>/`, one segment per run that added answers, so runs
sharing a cache never overwrite each other's entries. `scope` hashes the
backend identity and mode, so a run loads only answers it could use. Many
segments are compacted into one on load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from typing import Any

from jobs.common import keys
from jobs.common.backends import Messages, Reply
from jobs.common.spec import Decoding
from jobs.common.store import Store

log = logging.getLogger(__name__)
PREFIX = "cache/eval-answers"
COMPACT_AFTER = 16  # segments


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def answer_key(messages: Messages, decoding: Decoding, identity: dict[str, Any], mode: str) -> str:
    return _digest({"messages": messages, "options": decoding.model_dump(mode="json"), "model": identity, "mode": mode})


class AnswerCache:
    def __init__(self, store: Store, identity: dict[str, Any], mode: str):
        self.store = store
        self.prefix = keys.join(PREFIX, _digest({"model": identity, "mode": mode})[:32])
        self.entries: dict[str, dict[str, Any]] = {}
        self.new: dict[str, dict[str, Any]] = {}
        self.hits = 0
        self.misses = 0
        self._load()

    def _load(self) -> None:
        segments = self.store.list(self.prefix)
        for key in segments:
            raw = self.store.get_bytes(key)
            if raw is None:  # compacted away by a concurrent run
                continue
            for line in raw.decode().splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry["reply"]
                except (ValueError, KeyError, TypeError):
                    log.warning("answer cache: skipping a damaged line in %s", key)
        if len(segments) > COMPACT_AFTER:
            self._write_segment(self.entries)
            for key in segments:
                self.store.delete(key)

    def get(self, key: str) -> Reply | None:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return Reply(**entry)

    def put(self, key: str, reply: Reply) -> None:
        self.entries[key] = self.new[key] = reply.to_json()

    def _write_segment(self, entries: dict[str, dict[str, Any]]) -> None:
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}.jsonl"
        body = "".join(json.dumps({"key": k, "reply": v}, ensure_ascii=False) + "\n" for k, v in entries.items())
        self.store.put_bytes(keys.join(self.prefix, name), body.encode())

    def flush(self) -> None:
        """Persist the answers added since the last flush (also after a failed run: they are paid for)."""
        if self.new:
            self._write_segment(self.new)
            self.new = {}
