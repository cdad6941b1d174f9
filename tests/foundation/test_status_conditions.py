"""Conditions: one helper sets them for the planner and the controller; every reason is used."""

from __future__ import annotations

import re
from pathlib import Path

from jobs.common.status import Condition, ConditionType, Reason, condition

ROOT = Path(__file__).resolve().parents[2]


def test_a_condition_keeps_its_transition_time_while_its_status_holds():
    before = [Condition(type="Running", status="True", reason="StepRunning", last_transition_time="t0")]
    same = condition(before, "Running", "True", "StepStarted", "starting step train", "t1")
    assert same.last_transition_time == "t0" and same.reason == "StepStarted"
    flipped = condition(before, "Running", "False", "AllStepsSucceeded", "all steps finished", "t1")
    assert flipped.last_transition_time == "t1"
    assert condition([], ConditionType.SPEC_CHANGED, "True", Reason.SPEC_CHANGED, "edited", "t2").last_transition_time == "t2"


def test_every_reason_and_condition_type_is_used_by_the_planner_or_the_controller():
    code = "\n".join(p.read_text() for d in ("jobs", "controller") for p in (ROOT / d).rglob("*.py") if p.name != "status.py")
    for kind in (Reason, ConditionType):
        names = [n for n in vars(kind) if n.isupper()]
        unused = [n for n in names if not re.search(rf"\b{kind.__name__}\.{n}\b", code)]
        assert not unused, f"{kind.__name__} declares {unused}, which nothing sets"
