"""The cluster backend of the API: each job is a FineTuneRun created in its key's namespace through
the Kubernetes API, which the controller runs; the job's record follows the run's status.

A poll thread reads every unfinished job's run and turns what changed since the last read (a step
started or finished, the train step's progress, the run's end) into the same events the local
backend records. Cancel and pause set `spec.suspend` (the controller stops the running step's Job
and marks the run Cancelled); resume sets it back, and the run goes on from the unfinished step.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from jobs.api.records import Records
from jobs.api.worker import FINISHED, JobRecorder, set_running
from jobs.common.names import GROUP, PLURAL, VERSION
from jobs.common.spec import FineTuneRun
from jobs.common.status import RunStatus

log = logging.getLogger("jobs.api")

# Every Kubernetes API call this module makes; the chart's API Role grants exactly these.
RULES = [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["create", "get", "patch"]}]
# create: a job becomes a FineTuneRun.  get: the poll reads each unfinished job's run.
# patch: cancel, pause and resume set spec.suspend.

# A step's phase in the run's status -> the event the local runner reports for it.
STEP_EVENTS = {"Running": "started", "Succeeded": "succeeded", "Cached": "cached", "Failed": "failed"}
STOPPED = "Cancelled"


def status_updates(seen: dict[str, Any], status: dict[str, Any]) -> tuple[list[tuple[str, dict]], dict[str, Any]]:
    """(step, message) pairs for what changed in a run's status since `seen`, and the new `seen`.
    Messages have the local runner's shapes, so one recorder serves both runners."""
    updates: list[tuple[str, dict]] = []
    now: dict[str, Any] = {}
    for step in RunStatus.model_validate(status).steps:
        current = step.progress.current if step.progress else None
        now[step.name] = [step.phase, current]
        before = seen.get(step.name, ["Pending", None])
        if step.phase != before[0] and step.phase in STEP_EVENTS:
            event = {"type": "event", "message": STEP_EVENTS[step.phase]}
            if step.phase == "Failed":
                event["error"] = step.message or step.reason
            if step.phase in ("Succeeded", "Failed") and before[0] == "Pending":  # ran between two reads
                updates.append((step.name, {"type": "event", "message": "started"}))
            updates.append((step.name, event))
        if current is not None and current != before[1] and step.progress.loss is not None:
            updates.append((step.name, {"type": "progress", "current": current, "total": step.progress.total,
                                        "loss": step.progress.loss, "etaSeconds": step.progress.eta_seconds}))
    return updates, now


class ClusterWorker(JobRecorder):
    def __init__(self, records: Records, work_root: Path, namespaces: list[str], *, api_client=None,
                 interval: float = 2.0):
        from kubernetes import client

        super().__init__(records, work_root)
        self.runs = client.CustomObjectsApi(api_client)
        self.interval = interval
        self._lock = threading.Lock()
        # Unfinished jobs, also those a previous server process left: (namespace, job id) -> seen steps
        self._active: dict[tuple[str, str], dict[str, Any]] = {
            (ns, job["id"]): {} for ns in namespaces for job in records.jobs(ns) if job["status"] not in FINISHED
        }
        self._stop_requested: dict[str, str] = {}
        self._resuming: set[str] = set()  # un-suspended, until the run is seen past its Cancelled phase
        self._wake = threading.Event()
        threading.Thread(target=self._loop, name="ft-api-cluster", daemon=True).start()

    def submit(self, ns: str, job_id: str, run: FineTuneRun) -> None:
        """Create the job's FineTuneRun; a resumed job's run exists already and is un-suspended."""
        from kubernetes.client.exceptions import ApiException

        body = run.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            self.runs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        except ApiException as err:
            if err.status != 409:
                raise
            self._set_suspend(ns, job_id, False)
            with self._lock:
                self._resuming.add(job_id)
        with self._lock:
            self._active.setdefault((ns, job_id), {})
        self._wake.set()

    def stop(self, ns: str, job_id: str, why: str) -> None:
        with self._lock:
            self._stop_requested[job_id] = why
        self._set_suspend(ns, job_id, True)
        self._wake.set()

    def _set_suspend(self, ns: str, job_id: str, suspend: bool) -> None:
        self.runs.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job_id, {"spec": {"suspend": suspend}})

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            with self._lock:
                active = list(self._active)
            for ns, job_id in active:
                try:
                    self._poll(ns, job_id)
                except Exception:  # one run's trouble (the API server away) must not stop the others
                    log.exception("reading the run of job %s/%s failed; trying again", ns, job_id)

    def _poll(self, ns: str, job_id: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            run = self.runs.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job_id)
        except ApiException as err:
            if err.status != 404:
                raise
            self._forget(ns, job_id)
            self._finish(ns, job_id, "failed", error={"code": "run_deleted", "message": f"the FineTuneRun "
                         f"{ns}/{job_id} was deleted", "param": None})
            return
        status = run.get("status") or {}
        with self._lock:
            if job_id in self._resuming:
                if status.get("phase") == STOPPED:
                    return  # the controller has not seen spec.suspend: false yet
                self._resuming.discard(job_id)
        updates, seen = status_updates(self._active.get((ns, job_id), {}), status)
        job = self.records.job(ns, job_id) or {}
        if status.get("phase") == "Running" and job.get("status") == "queued":
            self.records.update_job(ns, job_id, set_running)
        for step, msg in updates:
            self._on_update(ns, job_id, step, msg)
        with self._lock:
            if (ns, job_id) in self._active:
                self._active[(ns, job_id)] = seen
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed", STOPPED):
            with self._lock:
                why = self._stop_requested.pop(job_id, None)
            self._forget(ns, job_id)
            self._ended(ns, job_id, RunStatus.model_validate(status), why or ("cancelled" if phase == STOPPED else None))

    def _forget(self, ns: str, job_id: str) -> None:
        with self._lock:
            self._active.pop((ns, job_id), None)
