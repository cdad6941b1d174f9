"""Prometheus metrics of the controller, on their own registry (one per controller)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from jobs.common.status import RunStatus
from jobs.pipeline.planner import Observed

RUN_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Cancelled")
STEP_BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 72 * 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Gauge("finetune_runs", "FineTuneRuns by phase.", ["phase"], registry=self.registry)
        self.step_seconds = Histogram(
            "finetune_step_duration_seconds",
            "Wall time of finished steps, from the Job's start to its end.",
            ["step", "phase"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.job_failures = Counter(
            "finetune_job_failures_total", "Step Jobs that failed, by reason.", ["step", "reason"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "finetune_reconcile_seconds", "Time of one reconcile of one run.", registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def serve(self, port: int) -> tuple[Any, Any]:
        """Serve /metrics on `port` in a thread; the server and its thread."""
        return start_http_server(port, registry=self.registry)

    def count_runs(self, runs_by_phase: Mapping[str, Collection[Any]]) -> None:
        """Report runs by phase from kopf's index of runs, read at each scrape."""
        for phase in RUN_PHASES:
            self.runs.labels(phase).set_function(lambda phase=phase: len(runs_by_phase.get(phase, ())))

    def step_transitions(self, previous: RunStatus, observed: dict[str, Observed]) -> None:
        """Count steps that finished since `previous` (each exactly once)."""
        before = {s.name: s.phase for s in previous.steps}
        for step, obs in observed.items():
            if obs.phase not in ("Succeeded", "Failed") or before.get(step) == obs.phase:
                continue
            if obs.phase == "Failed":
                self.job_failures.labels(step, obs.reason or "Unknown").inc()
            seconds = _seconds_between(obs.started, obs.finished)
            if seconds is not None:
                self.step_seconds.labels(step, obs.phase).observe(seconds)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except ValueError:
        return None
