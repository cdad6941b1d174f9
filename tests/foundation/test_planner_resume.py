"""A resumed run keeps its Suspended=False condition to the end, whether it succeeds or fails."""

import pytest
from tests.foundation.test_planner import NOW, OK, RUN, STEPS

from jobs.pipeline.planner import Observed, plan

LATER = "2026-01-01T01:00:00Z"


@pytest.mark.parametrize("last, phase", [(OK, "Succeeded"), (Observed(phase="Failed", attempts=1, reason="StepFailed"), "Failed")])
def test_suspended_false_stays_after_the_resumed_run_ends(last, phase):
    suspended = plan(STEPS, {"pack": OK, "train": RUN}, now=NOW, suspend=True)
    resumed = plan(STEPS, {"pack": OK, "train": RUN}, now=NOW, previous=suspended.status)
    done = plan(STEPS, {"pack": OK, "train": OK, "evaluate": last}, now=LATER, previous=resumed.status)
    assert done.status.phase == phase
    cond = next(c for c in done.status.conditions if c.type == "Suspended")
    assert (cond.status, cond.reason, cond.last_transition_time) == ("False", "Resumed", NOW)


def test_a_run_never_suspended_has_no_suspended_condition():
    done = plan(STEPS, {"pack": OK, "train": OK, "evaluate": OK}, now=NOW)
    assert all(c.type != "Suspended" for c in done.status.conditions)
