"""The planner as tables: observed step states in, actions and status out."""

import pytest

from jobs.common.progress import StepProgress
from jobs.common.status import Reason, RunStatus
from jobs.pipeline.planner import Observed, Start, Stop, plan

STEPS = ["pack", "train", "evaluate"]
NOW = "2026-01-01T00:00:00Z"
OK = Observed(phase="Succeeded", attempts=1)
CACHED = Observed(phase="Cached")
RUN = Observed(phase="Running", attempts=1)


def failed(retryable: bool, attempts: int = 1, reason: str = "Crash") -> Observed:
    return Observed(phase="Failed", attempts=attempts, retryable=retryable, reason=reason, message="boom")


@pytest.mark.parametrize(
    "observed, max_attempts, actions, phase, current",
    [
        ({}, 1, [Start("pack", 1)], "Running", "pack"),
        ({"pack": RUN}, 1, [], "Running", "pack"),
        ({"pack": OK}, 1, [Start("train", 1)], "Running", "train"),
        ({"pack": CACHED, "train": CACHED}, 1, [Start("evaluate", 1)], "Running", "evaluate"),
        ({"pack": OK, "train": OK, "evaluate": OK}, 1, [], "Succeeded", None),
        ({"pack": OK, "train": failed(True)}, 3, [Start("train", 2)], "Running", "train"),
        ({"pack": OK, "train": failed(True, attempts=3)}, 3, [], "Failed", "train"),
        ({"pack": OK, "train": failed(False)}, 3, [], "Failed", "train"),
        ({"pack": failed(False, reason=Reason.GATE_NOT_MET)}, 1, [], "Failed", "pack"),
    ],
)
def test_plan_table(observed, max_attempts, actions, phase, current):
    p = plan(STEPS, observed, now=NOW, max_attempts=max_attempts)
    assert p.actions == actions
    assert p.status.phase == phase
    assert p.status.current_step == current


def test_failed_run_names_step_and_reason():
    p = plan(STEPS, {"pack": OK, "train": failed(False, reason="InvalidData")}, now=NOW)
    assert p.status.error.step == "train" and p.status.error.code == "InvalidData"
    failed_cond = next(c for c in p.status.conditions if c.type == "Failed")
    assert failed_cond.status == "True" and failed_cond.reason == Reason.STEP_FAILED


def test_gate_not_met_is_its_own_reason():
    p = plan(STEPS, {"pack": OK, "train": OK, "evaluate": failed(False, reason=Reason.GATE_NOT_MET)}, now=NOW)
    assert next(c for c in p.status.conditions if c.type == "Failed").reason == Reason.GATE_NOT_MET


def test_finished_runs_never_start_anything():
    done = plan(STEPS, {s: OK for s in STEPS}, now=NOW).status
    # Even if every step looked unstarted again (outputs deleted, Jobs GC'd), nothing restarts.
    again = plan(STEPS, {}, now="2026-01-02T00:00:00Z", previous=done)
    assert again.actions == [] and again.status == done
    failed_status = plan(STEPS, {"pack": failed(False)}, now=NOW).status
    assert plan(STEPS, {}, now=NOW, previous=failed_status).actions == []


def test_suspend_stops_running_step_and_resume_continues():
    p = plan(STEPS, {"pack": OK, "train": RUN}, now=NOW, suspend=True)
    assert p.actions == [Stop("train")]
    assert p.status.phase == "Cancelled"
    assert [s.phase for s in p.status.steps] == ["Succeeded", "Cancelled", "Pending"]
    resumed = plan(STEPS, {"pack": OK, "train": Observed(attempts=1)}, now=NOW, previous=p.status)
    assert resumed.actions == [Start("train", 2)]
    assert any(c.type == "Suspended" and c.status == "False" for c in resumed.status.conditions)
    running = plan(STEPS, {"pack": OK, "train": RUN}, now=NOW, previous=resumed.status)
    assert any(c.type == "Suspended" and c.status == "False" for c in running.status.conditions)


def test_invalid_spec_fails_without_actions():
    p = plan(STEPS, {}, now=NOW, invalid="spec.steps.evaluate.gate: unknown metric 'x'")
    assert p.actions == []
    assert p.status.phase == "Failed" and p.status.error.code == Reason.INVALID_SPEC
    assert "gate" in p.status.error.message


def test_conditions_keep_transition_time_while_unchanged():
    first = plan(STEPS, {"pack": RUN}, now=NOW).status
    later = plan(STEPS, {"pack": RUN}, now="2026-01-01T01:00:00Z", previous=first).status
    assert later == first  # nothing changed: the backend can skip the status patch
    moved = plan(STEPS, {"pack": OK, "train": RUN}, now="2026-01-01T02:00:00Z", previous=first).status
    accepted = next(c for c in moved.conditions if c.type == "Accepted")
    assert accepted.last_transition_time == NOW


def test_progress_text_and_artifacts():
    obs = {
        "pack": Observed(phase="Succeeded", outputs={"train": "file:///s/pack/train.jsonl"}),
        "train": Observed(phase="Running", attempts=1, progress=StepProgress(percent=42.0, loss=1.5)),
    }
    status = plan(STEPS, obs, now=NOW).status
    assert status.progress == "1/3 train 42%"
    assert status.artifacts == {"train": "file:///s/pack/train.jsonl"}
    assert status.steps[1].progress.loss == 1.5


def test_first_plan_writes_conditions_at_once():
    status = plan(STEPS, {}, now=NOW, previous=RunStatus()).status
    assert {c.type for c in status.conditions} >= {"Accepted", "Running"}
