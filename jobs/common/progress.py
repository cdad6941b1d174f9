"""Progress reporting: one JSON line per update on stdout.

`ftctl run` reads these lines from the child's pipe. In a cluster the same
updates are also written to `runs/<ns>/<run>/<step>/progress.json` in the store
(at most every FT_PROGRESS_INTERVAL seconds), which the controller polls.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

PROGRESS = "progress"
EVENT = "event"


def emit(kind: str, **fields: Any) -> str:
    line = json.dumps({"type": kind, **fields}, default=str)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return line


def write_termination_message(line: str) -> None:
    """In a pod, the error line also goes to the termination-message file, so the controller
    reads it from the pod status whatever the log holds."""
    path = os.environ.get("FT_TERMINATION_LOG", "/dev/termination-log")
    try:
        with open(path, "w") as f:
            f.write(line[:4000])  # the kubelet keeps at most 4096 bytes
    except OSError:
        pass  # not in a pod


def parse_line(line: str) -> dict[str, Any] | None:
    """The message in a child's stdout line, or None for ordinary output."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        msg = json.loads(line)
    except json.JSONDecodeError:
        return None
    return msg if isinstance(msg, dict) and msg.get("type") in (PROGRESS, EVENT, "error") else None


class Progress:
    def __init__(self, step: str, sink: Callable[[dict[str, Any]], None] | None = None):
        self.step = step
        self.started = time.time()
        self.sink = sink
        self.interval = float(os.environ.get("FT_PROGRESS_INTERVAL", "10"))
        self._last_sink = 0.0

    def update(self, current: int, total: int, **metrics: Any) -> dict[str, Any]:
        elapsed = time.time() - self.started
        percent = 100.0 * current / total if total else 0.0
        eta = elapsed / current * (total - current) if current else None
        msg = {
            "step": self.step,
            "current": current,
            "total": total,
            "percent": round(percent, 1),
            "etaSeconds": round(eta, 1) if eta is not None else None,
            **{k: v for k, v in metrics.items() if v is not None},
        }
        emit(PROGRESS, **msg)
        now = time.time()
        if self.sink and (now - self._last_sink >= self.interval or current >= total):
            self._last_sink = now
            self.sink(msg)
        return msg

    def event(self, message: str, **fields: Any) -> None:
        emit(EVENT, step=self.step, message=message, **fields)
