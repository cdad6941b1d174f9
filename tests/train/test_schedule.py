"""warmupSteps, lrScheduler and weightDecay reach the Trainer: the logged learning rates follow
the schedule, and the Trainer is given the weight decay."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tests.train.trainkit import chat_rows

from jobs.common.spec import TrainStep
from jobs.train.session import Session


def test_warmup_then_constant_learning_rate(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)},
                   train={"maxSteps": 4, "batchSize": 2, "learningRate": 0.01, "maxLength": 64,
                          "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                          "warmupSteps": 2, "lrScheduler": "constant_with_warmup", "weightDecay": 0.1},
                   splits={"train": chat_rows(8)})
    run.execute()
    lrs = [r["lr"] for r in run.metrics() if "loss" in r]
    # linear ramp from 0 over the 2 warmup steps, then flat
    assert lrs == pytest.approx([0.0, 0.005, 0.01, 0.01])


def test_trainer_arguments_carry_the_knobs(tmp_path):
    from transformers import TrainingArguments

    cfg = TrainStep.model_validate({"warmupSteps": 10, "lrScheduler": "cosine", "weightDecay": 0.01})
    args = TrainingArguments(**Session.trainer_args(SimpleNamespace(cfg=cfg, work=tmp_path)))
    assert (args.warmup_steps, args.lr_scheduler_type, args.weight_decay) == (10, "cosine", 0.01)
    ratio = TrainingArguments(**Session.trainer_args(SimpleNamespace(cfg=TrainStep(warmup_ratio=0.1), work=tmp_path)))
    assert ratio.warmup_steps == 0.1 and ratio.lr_scheduler_type == "linear" and ratio.weight_decay == 0.0


def test_warmup_steps_and_ratio_exclude_each_other():
    from tests.foundation.test_spec import errors_of, minimal

    message = errors_of(minimal(steps={"pack": {}, "train": {"warmupSteps": 5, "warmupRatio": 0.1}}))
    assert "spec.steps.train: set warmupSteps or warmupRatio, not both" in message
    assert "lrScheduler: must be one of" in errors_of(minimal(steps={"pack": {}, "train": {"lrScheduler": "cosine_typo"}}))
