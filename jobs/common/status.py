"""The FineTuneRun status: what `kubectl get ftr` and `ftctl status` show.

Reasons are constants so that users and alerts can match on them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jobs.common.progress import StepProgress
from jobs.common.spec import Model

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
StepPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cached", "Cancelled"]
TERMINAL_PHASES = ("Succeeded", "Failed")


class Reason:
    SPEC_VALID = "SpecValid"
    INVALID_SPEC = "InvalidSpec"
    SPEC_CHANGED = "SpecChanged"
    STEP_STARTED = "StepStarted"
    STEP_RUNNING = "StepRunning"
    STEP_RETRYING = "StepRetrying"
    STEP_FAILED = "StepFailed"
    GATE_NOT_MET = "GateNotMet"
    ALL_SUCCEEDED = "AllStepsSucceeded"
    CANCELLED = "Cancelled"
    RESUMED = "Resumed"
    SECRET_NOT_FOUND = "SecretNotFound"


class ConditionType:
    ACCEPTED = "Accepted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    SPEC_CHANGED = "SpecChanged"  # the spec was edited after the run started; the edit has no effect


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str


def condition(previous: list[Condition], ctype: str, status: str, reason: str, message: str, now: str) -> Condition:
    """A condition as of `now`, keeping the lastTransitionTime of the previous one of its type when
    its status did not change."""
    old = next((c for c in previous if c.type == ctype), None)
    since = old.last_transition_time if old and old.status == status else now
    return Condition(type=ctype, status=status, reason=reason, message=message, last_transition_time=since)


class StepStatus(Model):
    name: str
    phase: StepPhase = "Pending"
    job: str | None = None
    started: str | None = None
    finished: str | None = None
    attempts: int = 0
    cached: bool = False
    progress: StepProgress | None = None
    reason: str | None = None
    message: str | None = None


class RunError(Model):
    code: str
    message: str
    step: str | None = None


class RunStatus(Model):
    phase: RunPhase = "Pending"
    current_step: str | None = None
    progress: str | None = Field(default=None, description="Short progress text for kubectl get.")
    steps: list[StepStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    artifacts: dict[str, str] = Field(default_factory=dict)
    error: RunError | None = None
    spec_hash: str | None = Field(default=None, description="Hash of the spec the run started with.")
    observed_generation: int | None = None
