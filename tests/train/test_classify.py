"""Sequence classification: tiny BERT (LoRA and full fine-tune), metrics on val and test."""

from __future__ import annotations

import json
import shutil

import pytest
from tests.train.trainkit import LABELS, classification_rows, committed_steps, crash_after_training

from jobs.train.classify import report, scores

SPLITS = {"train": classification_rows(24), "val": classification_rows(6, 100), "test": classification_rows(6, 200)}
SMALL = {"method": "classification", "epochs": 3, "batchSize": 4, "learningRate": 0.01, "maxLength": 32,
         "checkpointEvery": 3}


def test_scores_and_report_match_hand_counts():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    s = scores(y_true, y_pred)
    assert s["accuracy"] == pytest.approx(4 / 6)
    # per class F1: class0 p=1/2 r=1/2 -> .5; class1 p=2/3 r=1 -> .8; class2 p=1 r=1/2 -> 2/3
    assert s["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert s["f1_micro"] == pytest.approx(4 / 6)
    r = report(y_true, y_pred, ["a", "b", "c"])
    assert r["confusionMatrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert r["perLabel"]["b"]["recall"] == 1.0


@pytest.mark.parametrize("lora", [{"r": 4, "alpha": 8, "dropout": 0.0}, None], ids=["lora", "full"])
def test_classification_trains_selects_and_reports(make_run, tiny_bert, lora):
    run = make_run(
        model={"hf": str(tiny_bert)},
        train={**SMALL, "lora": lora},
        splits=SPLITS,
        fmt="classification",
    )
    manifest = run.execute()
    artifact = "adapter" if lora else "model"
    assert manifest["outputs"] == {artifact: f"{artifact}/", "lossPlot": "loss.png", "trainingReport": "training_report.md"}
    m = manifest["metrics"]
    for key in ("testAccuracy", "testF1Macro", "testF1Micro", "testF1Weighted", "testPrecisionMacro",
                "testRecallMacro", "valF1Macro"):
        assert 0.0 <= m[key] <= 1.0
    assert m["firstLoss"] != m["lastLoss"] and m["bestCheckpoint"].startswith("checkpoint-")
    assert json.loads(run.read("labels.json"))["labels"] == sorted(LABELS)
    rep = json.loads(run.read("classification_report.json"))
    assert len(rep["test"]["confusionMatrix"]["matrix"]) == 3
    assert sum(map(sum, rep["test"]["confusionMatrix"]["matrix"])) == 6
    evals = [r for r in run.metrics() if "eval_f1_macro" in r]
    assert len(evals) == 3  # one evaluation per epoch (24 rows / batch 4 = 6 steps)


def test_restarted_classification_resumes_and_still_restores_its_best(make_run, tiny_bert, monkeypatch):
    run = make_run(
        model={"hf": str(tiny_bert)},
        train={**SMALL, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        splits=SPLITS,
        fmt="classification",
    )
    with monkeypatch.context() as m:
        crash_after_training(m)
        with pytest.raises(RuntimeError):
            run.execute()
    saved = committed_steps(run.store)
    assert saved and all(step % 6 == 0 for step in saved)  # checkpoints fall on evaluations (per epoch)
    shutil.rmtree(run.tmp / "scratch")  # the old pod is gone, and with it the paths its state names
    run.env["FT_SCRATCH"] = str(run.tmp / "fresh-pod")
    metrics = run.execute()["metrics"]
    assert metrics["resumedFromStep"] == max(saved) and metrics["steps"] == 18
    restored = run.tmp / "fresh-pod" / "trainer" / f"checkpoint-{max(saved)}"
    state = json.loads((restored / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == str(restored)  # the best can still be loaded at the end
    assert metrics["bestCheckpoint"].startswith("checkpoint-") and 0 <= metrics["testF1Macro"] <= 1
