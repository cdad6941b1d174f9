"""Early stopping for SFT and DPO: a val loss that stops improving ends training, the best model
is the one kept, and the manifest says so."""

from __future__ import annotations

import pytest
from tests.train.trainkit import QA, chat_row, chat_rows, dpo_rows

from jobs.common.progress import parse_line

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


def contradicting_rows(n: int) -> list[dict]:
    """The training questions with other answers: the better train fits, the worse these score."""
    return [chat_row(i, QA[i % len(QA)][0], "No idea, sorry, I really cannot say.") for i in range(n)]


def assert_stopped_on_best(manifest: dict, max_steps: int, patience: int) -> None:
    m = manifest["metrics"]
    assert m["earlyStopped"] is True and m["steps"] < max_steps, m
    assert m["bestMetric"] == "eval_loss" and m["bestStep"] < m["steps"]
    # stopped once `patience` evaluations after the best were no better
    assert m["steps"] == m["bestStep"] + patience
    # the saved model is the best one: the final evaluation scores what was kept
    assert m["evalLoss"] == pytest.approx(m["bestScore"], abs=1e-3)
    assert manifest["note"].startswith(f"stopped early at step {m['steps']}")


def test_sft_stops_early_and_keeps_the_best_model(make_run, tiny_llama, capsys):
    run = make_run(model={"hf": str(tiny_llama)},
                   train={"maxSteps": 40, "batchSize": 2, "learningRate": 0.05, "maxLength": 64, "lora": LORA,
                          "evalEvery": 1, "earlyStoppingPatience": 2},
                   splits={"train": chat_rows(8), "val": contradicting_rows(2)})
    manifest = run.execute()
    assert_stopped_on_best(manifest, 40, 2)
    evals = [r["eval_loss"] for r in run.metrics() if "eval_loss" in r]
    assert min(evals[:-1]) == pytest.approx(manifest["metrics"]["bestScore"], abs=1e-3)
    events = [m for m in map(parse_line, capsys.readouterr().out.splitlines()) if m and m["type"] == "event"]
    assert any(e["message"] == "stopped early" for e in events)


def test_dpo_stops_early_too(make_run, tiny_llama):
    swapped = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in dpo_rows(2)]
    run = make_run(model={"hf": str(tiny_llama)},
                   train={"method": "dpo", "maxSteps": 40, "batchSize": 2, "learningRate": 0.05, "maxLength": 96,
                          "lora": LORA, "evalEvery": 1, "earlyStoppingPatience": 1},
                   splits={"train": dpo_rows(6), "val": swapped}, fmt="dpo")
    assert_stopped_on_best(run.execute(), 40, 1)


def test_no_selection_without_val_or_patience():
    from types import SimpleNamespace

    from jobs.common.spec import TrainStep
    from jobs.train.session import Session

    def session(**train) -> Session:
        return SimpleNamespace(cfg=TrainStep.model_validate(train))  # type: ignore[return-value]

    assert Session.select_best(session(earlyStoppingPatience=0, evalEvery=1), has_val=True) == {}
    assert Session.select_best(session(evalEvery=1), has_val=False) == {}
    assert Session.select_best(session(), has_val=True)["eval_strategy"] == "epoch"
