"""Turn what the cluster and the store show into the planner's view of each step. Pure.

A step's Job is the source of truth while the step is unfinished: Complete means
succeeded, Failed means failed (with the reason Kubernetes gives, and the step's
own error from its pod's termination message). Once the run's status records a
step as Succeeded or Cached, that record stands: the Job may since have been
removed by its TTL, and a finished step is never looked at, or run, again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jobs.common.names import LABEL_RUN, LABEL_STEP
from jobs.common.status import RunStatus, StepProgress, StepStatus
from jobs.pipeline.planner import Observed

FINISHED_STEP_PHASES = ("Succeeded", "Cached")
MAX_MESSAGE = 1000


@dataclass(frozen=True)
class JobInfo:
    """The little the controller keeps of a Job (kept for every Job, so kept small)."""

    name: str
    run: str
    step: str
    owner_uid: str | None
    complete: bool = False
    failed: bool = False
    reason: str | None = None
    message: str | None = None
    queued: bool = False
    deleting: bool = False
    attempts: int = 0
    started: str | None = None
    finished: str | None = None


def job_info(body: dict[str, Any]) -> JobInfo | None:
    """The summary of a Job, or None when the Job is not a step's."""
    meta = body.get("metadata", {})
    labels = meta.get("labels") or {}
    if LABEL_RUN not in labels or LABEL_STEP not in labels:
        return None
    status = body.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    done = conds.get("Complete") or conds.get("Failed")
    owner = next((r.get("uid") for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    return JobInfo(
        name=meta.get("name", ""),
        run=labels[LABEL_RUN],
        step=labels[LABEL_STEP],
        owner_uid=owner,
        complete="Complete" in conds,
        failed="Failed" in conds,
        reason=conds["Failed"].get("reason") if "Failed" in conds else None,
        message=conds["Failed"].get("message") if "Failed" in conds else None,
        queued=bool((body.get("spec") or {}).get("suspend")) and not status.get("startTime"),
        deleting=bool(meta.get("deletionTimestamp")),
        attempts=_attempts(body.get("spec") or {}, status),
        started=status.get("startTime"),
        finished=status.get("completionTime") or (done.get("lastTransitionTime") if done else None),
    )


def _attempts(spec: dict[str, Any], status: dict[str, Any]) -> int:
    """Attempts so far: failed pods plus the one running or done. A Job of several pods (an
    Indexed Job, one pod per node) makes an attempt with all of them, and a fault fails each."""
    pods = int(spec.get("completions") or 1) if spec.get("completionMode") == "Indexed" else 1
    failed = -(-int(status.get("failed") or 0) // pods)
    return failed + (1 if int(status.get("active") or 0) or int(status.get("succeeded") or 0) else 0)


@dataclass(frozen=True)
class StepError:
    """What a failed step said about itself (its JSON error line), and how its container ended."""

    code: str | None = None
    message: str | None = None
    exit_code: int | None = None


def parse_termination(message: str | None, exit_code: int | None) -> StepError:
    """Read the step's `{"type": "error", "code", "message"}` line out of a termination message."""
    lines = [ln.strip() for ln in (message or "").splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(msg, dict) and msg.get("type") == "error":
                return StepError(msg.get("code"), str(msg.get("message", ""))[:MAX_MESSAGE], exit_code)
    return StepError(None, lines[-1][:MAX_MESSAGE] if lines else None, exit_code)


def pod_error(pods: list[dict[str, Any]], container: str) -> StepError | None:
    """The error of the most recently failed attempt among a Job's pods."""
    ended = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if cs.get("name") == container and term and term.get("exitCode", 0) != 0:
                ended.append((term.get("finishedAt") or "", term))
    if not ended:
        return None
    _, term = max(ended, key=lambda e: e[0])
    return parse_termination(term.get("message"), term.get("exitCode"))


@dataclass(frozen=True)
class StepFacts:
    """What the reconciler read for one step besides its Job."""

    manifest: dict[str, Any] | None = None  # the committed output of a completed Job
    outputs: dict[str, str] = field(default_factory=dict)  # artifact name -> URI
    error: StepError | None = None  # from the pods of a failed Job
    progress: StepProgress | None = None  # progress.json of a running step


def _carried(prev: StepStatus) -> Observed:
    return Observed(
        phase=prev.phase,  # type: ignore[arg-type]  # Succeeded or Cached
        attempts=prev.attempts,
        job=prev.job,
        started=prev.started,
        finished=prev.finished,
        progress=prev.progress,
        message=prev.message,
    )


def _failure_message(job: JobInfo, error: StepError | None) -> str:
    detail = f"Job {job.name} failed: {job.reason or 'Failed'}"
    if error and error.exit_code is not None:
        detail += f", exit code {error.exit_code}"
    if error and error.message:
        return f"{error.message} ({detail})"
    return f"{job.message or 'no message'} ({detail})"


def observe_step(job: JobInfo | None, prev: StepStatus | None, facts: StepFacts, run_uid: str) -> Observed:
    if prev is not None and prev.phase in FINISHED_STEP_PHASES:
        return _carried(prev)
    prev_progress = prev.progress if prev else None
    if job is None:
        return Observed(phase="NotStarted", attempts=prev.attempts if prev else 0)
    if job.owner_uid != run_uid:
        # A Job of an earlier run with the same name, not yet garbage-collected.
        return Observed(
            phase="Running",
            job=job.name,
            message=f"waiting for Job {job.name} of an earlier run named {job.run} to be deleted",
        )
    # Never fewer attempts than status already shows: a Job that has no pod yet (just created, or
    # queued by Kueue) reports none, and the planner counts its restarts with this number.
    attempts = max(job.attempts, prev.attempts if prev else 0)
    common = {"job": job.name, "attempts": attempts, "started": job.started}
    if job.deleting:
        return Observed(phase="Running", message=f"Job {job.name} is being deleted", **common)
    if job.complete:
        cached = bool(facts.manifest and facts.manifest.get("cached"))
        return Observed(
            phase="Cached" if cached else "Succeeded",
            finished=job.finished,
            outputs=facts.outputs,
            progress=prev_progress,
            message=(facts.manifest or {}).get("note"),  # e.g. train's "stopped early at step …"
            **common,
        )
    if job.failed:
        error = facts.error
        return Observed(
            phase="Failed",
            finished=job.finished,
            reason=(error.code if error and error.code else None) or job.reason or "JobFailed",
            message=_failure_message(job, error),
            retryable=False,  # the Job's own backoffLimit has already retried it
            progress=prev_progress,
            **common,
        )
    progress = facts.progress or prev_progress
    resumed = progress.resume_note() if progress else None
    return Observed(
        phase="Running",
        progress=progress,
        message="queued: waiting for Kueue to admit the Job" if job.queued else resumed,
        **common,
    )


def observe(
    steps: list[str],
    jobs: dict[str, JobInfo],
    previous: RunStatus,
    run_uid: str,
    facts: dict[str, StepFacts] | None = None,
) -> dict[str, Observed]:
    prev = {s.name: s for s in previous.steps}
    facts = facts or {}
    return {s: observe_step(jobs.get(s), prev.get(s), facts.get(s, StepFacts()), run_uid) for s in steps}


def needs(steps: list[str], jobs: dict[str, JobInfo], previous: RunStatus, run_uid: str) -> dict[str, str]:
    """Which steps need a read beyond their Job: 'manifest' (just completed), 'error'
    (just failed) or 'progress' (running)."""
    prev = {s.name: s for s in previous.steps}
    out = {}
    for s in steps:
        job, p = jobs.get(s), prev.get(s)
        if job is None or job.owner_uid != run_uid or (p and p.phase in FINISHED_STEP_PHASES):
            continue
        if job.complete:
            out[s] = "manifest"
        elif job.failed:
            out[s] = "error"
        elif not job.deleting and not job.queued:
            out[s] = "progress"
    return out
