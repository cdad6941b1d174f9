"""Progress reporting: one JSON line per update on stdout.

`ftctl run` reads these lines from the child's pipe. In a cluster the same
updates are also written to `runs/<ns>/<run>/<step>/progress.json` in the store
(at most every FT_PROGRESS_INTERVAL seconds), which the controller polls.
Both read them into StepProgress, the model the run's status shows.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

from pydantic import Field

from jobs.common.spec import Model

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


class StepProgress(Model):
    percent: float | None = None
    current: int | None = None
    total: int | None = None
    loss: float | None = None
    tokens_per_sec: float | None = None
    eta_seconds: float | None = None
    # Written by a train step that resumed from a checkpoint: the step it resumed from, and the
    # step at which SIGTERM stopped the pod before it (when a preemption, not a crash, ended it).
    resumed_from: int | None = Field(default=None, ge=0)
    preempted_at: int | None = Field(default=None, ge=0)

    def resume_note(self) -> str | None:
        """What the step's status message says about a resumed attempt."""
        if self.resumed_from is None:
            return None
        resumed = f"resumed from step {self.resumed_from}"
        return resumed if self.preempted_at is None else f"preempted at step {self.preempted_at}, {resumed}"


    @classmethod
    def of(cls, msg: dict[str, Any]) -> StepProgress | None:
        """The fields of a progress line (or progress.json) that status shows; None when it has none."""
        known = {f.alias or name for name, f in cls.model_fields.items()}
        fields = {k: v for k, v in msg.items() if k in known and v is not None}
        return cls.model_validate(fields) if fields else None


class Progress:
    """`quiet`: a worker other than rank 0 of a distributed step, whose lines would repeat rank 0's.
    `carry`: fields every update repeats, e.g. preemptedAt and resumedFrom after a preemption."""

    def __init__(self, step: str, sink: Callable[[dict[str, Any]], None] | None = None, quiet: bool = False):
        self.step = step
        self.started = time.time()
        self.sink = sink
        self.quiet = quiet
        self.carry: dict[str, Any] = {}
        self.interval = float(os.environ.get("FT_PROGRESS_INTERVAL", "10"))
        self._last_sink = 0.0

    def update(self, current: int, total: int, *, flush: bool = False, **metrics: Any) -> dict[str, Any]:
        """`flush`: write to the sink now, whatever the interval (a preemption's last word)."""
        elapsed = time.time() - self.started
        percent = 100.0 * current / total if total else 0.0
        eta = elapsed / current * (total - current) if current else None
        msg = {
            "step": self.step,
            "current": current,
            "total": total,
            "percent": round(percent, 1),
            "etaSeconds": round(eta, 1) if eta is not None else None,
            **{k: v for k, v in {**self.carry, **metrics}.items() if v is not None},
        }
        if self.quiet:
            return msg
        emit(PROGRESS, **msg)
        now = time.time()
        if self.sink and (flush or now - self._last_sink >= self.interval or current >= total):
            self._last_sink = now
            self.sink(msg)
        return msg

    def event(self, message: str, **fields: Any) -> None:
        if not self.quiet:
            emit(EVENT, step=self.step, message=message, **fields)
