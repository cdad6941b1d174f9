"""The planner: given what is known of each step, say what to do next and what the
status is. Pure: no Kubernetes, no kopf, no subprocesses, no clock (`now` is passed).

Both runners (the controller and the local runner) call `plan()` after every observation and
carry out its actions: the controller creates/deletes Jobs, `ftctl run` starts/stops child processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jobs.common.status import (
    TERMINAL_PHASES,
    ConditionType,
    Reason,
    RunError,
    RunStatus,
    StepProgress,
    StepStatus,
    condition,
)

ObservedPhase = Literal["NotStarted", "Running", "Succeeded", "Cached", "Failed"]


@dataclass(frozen=True)
class Observed:
    """What a backend knows of one step."""

    phase: ObservedPhase = "NotStarted"
    attempts: int = 0
    retryable: bool = False
    reason: str | None = None
    message: str | None = None
    job: str | None = None
    started: str | None = None
    finished: str | None = None
    progress: StepProgress | None = None
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Start:
    step: str
    attempt: int


@dataclass(frozen=True)
class Stop:
    step: str


Action = Start | Stop


@dataclass(frozen=True)
class Plan:
    actions: list[Action]
    status: RunStatus


def _step_status(name: str, obs: Observed, cancelled: bool) -> StepStatus:
    phase = {
        "NotStarted": "Pending",
        "Running": "Running",
        "Succeeded": "Succeeded",
        "Cached": "Cached",
        "Failed": "Failed",
    }[obs.phase]
    if cancelled and phase in ("Running", "Pending") and obs.attempts:
        phase = "Cancelled"
    return StepStatus(
        name=name,
        phase=phase,
        job=obs.job,
        started=obs.started,
        finished=obs.finished,
        attempts=obs.attempts,
        cached=obs.phase == "Cached",
        progress=obs.progress,
        reason=obs.reason,
        message=obs.message,
    )



def _progress_text(steps: list[StepStatus], current: str | None) -> str:
    done = sum(1 for s in steps if s.phase in ("Succeeded", "Cached"))
    text = f"{done}/{len(steps)}"
    if current:
        cur = next(s for s in steps if s.name == current)
        pct = cur.progress.percent if cur.progress and cur.progress.percent is not None else None
        text += f" {current}" + (f" {pct:.0f}%" if pct is not None else "")
    return text


def plan(
    steps: list[str],
    observed: dict[str, Observed],
    *,
    now: str,
    previous: RunStatus | None = None,
    suspend: bool = False,
    max_attempts: int = 1,
    invalid: str | None = None,
    spec_hash: str | None = None,
    suspend_message: str = "suspended by spec.suspend; set it to false to resume",
) -> Plan:
    """Decide the next actions and the new status.

    `max_attempts` counts the planner's own restarts of a failed, retryable step (the
    local runner). In a cluster the Job's backoffLimit retries pods, so the
    controller reports a Job's final failure as not retryable.
    """
    prev = previous or RunStatus()
    obs = {s: observed.get(s, Observed()) for s in steps}
    status_steps = [_step_status(s, obs[s], suspend) for s in steps]
    artifacts = {k: v for s in steps for k, v in obs[s].outputs.items()}
    accepted = (ConditionType.ACCEPTED, "True", Reason.SPEC_VALID, "spec is valid")
    # Once a run was suspended, Suspended stays in its conditions (False after a resume).
    resumed = prev.phase == "Cancelled" or any(c.type == ConditionType.SUSPENDED for c in prev.conditions)

    def finish(phase: str, current: str | None, conds: list, error: RunError | None = None, actions=()) -> Plan:
        if resumed and all(c[0] != ConditionType.SUSPENDED for c in conds):
            conds = [*conds, (ConditionType.SUSPENDED, "False", Reason.RESUMED, "resumed")]
        status = RunStatus(
            phase=phase,
            current_step=current,
            progress=_progress_text(status_steps, current),
            steps=status_steps,
            conditions=[condition(prev.conditions, *c, now) for c in conds],
            artifacts=artifacts,
            error=error,
            spec_hash=prev.spec_hash or spec_hash,
            observed_generation=prev.observed_generation,
        )
        return Plan(list(actions), status)

    if invalid is not None:
        return finish(
            "Failed",
            None,
            [
                (ConditionType.ACCEPTED, "False", Reason.INVALID_SPEC, invalid),
                (ConditionType.FAILED, "True", Reason.INVALID_SPEC, invalid),
            ],
            RunError(code=Reason.INVALID_SPEC, message=invalid),
        )

    # A finished run stays finished: nothing is ever started again for it.
    if prev.phase in TERMINAL_PHASES:
        return Plan([], prev)

    if suspend:
        running = [s for s in steps if obs[s].phase == "Running"]
        msg = suspend_message
        return finish(
            "Cancelled",
            None,
            [accepted, (ConditionType.RUNNING, "False", Reason.CANCELLED, msg),
             (ConditionType.SUSPENDED, "True", Reason.CANCELLED, msg)],
            actions=[Stop(s) for s in running],
        )

    for s in steps:
        o = obs[s]
        if o.phase in ("Succeeded", "Cached"):
            continue
        if o.phase == "Running":
            return finish(
                "Running",
                s,
                [accepted, (ConditionType.RUNNING, "True", Reason.STEP_RUNNING, f"step {s} is running")],
            )
        if o.phase == "Failed":
            if o.retryable and o.attempts < max_attempts:
                msg = f"step {s} failed ({o.reason}); attempt {o.attempts + 1}/{max_attempts}"
                return finish(
                    "Running",
                    s,
                    [accepted, (ConditionType.RUNNING, "True", Reason.STEP_RETRYING, msg)],
                    actions=[Start(s, o.attempts + 1)],
                )
            reason = Reason.GATE_NOT_MET if o.reason == Reason.GATE_NOT_MET else Reason.STEP_FAILED
            msg = f"step {s} failed: {o.message or o.reason or 'no reason given'}"
            return finish(
                "Failed",
                s,
                [accepted, (ConditionType.RUNNING, "False", reason, msg), (ConditionType.FAILED, "True", reason, msg)],
                RunError(code=o.reason or reason, message=o.message or msg, step=s),
            )
        # NotStarted
        return finish(
            "Running",
            s,
            [accepted, (ConditionType.RUNNING, "True", Reason.STEP_STARTED, f"starting step {s}")],
            actions=[Start(s, o.attempts + 1)],
        )

    return finish(
        "Succeeded",
        None,
        [
            accepted,
            (ConditionType.RUNNING, "False", Reason.ALL_SUCCEEDED, "all steps finished"),
            (ConditionType.SUCCEEDED, "True", Reason.ALL_SUCCEEDED, "all steps finished"),
        ],
    )
