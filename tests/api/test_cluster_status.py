"""The cluster backend turns changes in a FineTuneRun's status into the local runner's messages."""

from __future__ import annotations

from jobs.api.cluster import status_updates


def steps(*items: dict) -> dict:
    return {"phase": "Running", "steps": list(items)}


def test_step_changes_and_train_progress_become_events_once():
    seen: dict = {}
    updates, seen = status_updates(seen, steps({"name": "pack", "phase": "Running"}, {"name": "train"}))
    assert updates == [("pack", {"type": "event", "message": "started"})]

    # pack finished and train started between two reads; train reports progress
    progress = {"current": 3, "total": 10, "loss": 1.25, "etaSeconds": 40.0}
    updates, seen = status_updates(seen, steps({"name": "pack", "phase": "Succeeded"},
                                               {"name": "train", "phase": "Running", "progress": progress}))
    assert updates == [
        ("pack", {"type": "event", "message": "succeeded"}),
        ("train", {"type": "event", "message": "started"}),
        ("train", {"type": "progress", "current": 3, "total": 10, "loss": 1.25, "etaSeconds": 40.0}),
    ]
    # read again unchanged: nothing new
    again, seen = status_updates(seen, steps({"name": "pack", "phase": "Succeeded"},
                                             {"name": "train", "phase": "Running", "progress": progress}))
    assert again == []


def test_a_step_that_ran_and_failed_unseen_is_started_then_failed_with_its_message():
    updates, _ = status_updates({}, steps({"name": "pack", "phase": "Failed", "reason": "InvalidData",
                                           "message": "train.jsonl:3: not JSON"}))
    assert updates == [("pack", {"type": "event", "message": "started"}),
                       ("pack", {"type": "event", "message": "failed", "error": "train.jsonl:3: not JSON"})]


def test_a_cached_step_is_reported_cached():
    updates, _ = status_updates({}, steps({"name": "pack", "phase": "Cached", "cached": True}))
    assert updates == [("pack", {"type": "event", "message": "cached"})]  # as the local runner says it
