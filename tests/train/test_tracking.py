"""Tracking: metrics.jsonl and the loss plot always; W&B (offline) when the spec asks."""

from __future__ import annotations

import json
import math

import pytest
from tests.train.trainkit import chat_rows

from jobs.common.errors import InvalidInput
from jobs.common.spec import Wandb
from jobs.common.tracking import MetricsLog, NullTracker, WandbTracker, open_tracker, plot_loss


class Recorder:
    def __init__(self):
        self.logged, self.summaries, self.finished = [], [], 0

    def log(self, record, step):
        self.logged.append((step, record))

    def summary(self, metrics):
        self.summaries.append(metrics)

    def finish(self):
        self.finished += 1


def test_metrics_log_writes_jsonl_and_feeds_the_tracker(tmp_path):
    tracker = Recorder()
    log = MetricsLog(tmp_path / "metrics.jsonl", tracker)
    log.write({"step": 1, "loss": 2.5, "grad_norm": math.nan})
    log.write({"step": 2, "loss": 2.0})
    log.write({"step": 3, "loss": 1.5, "eval_loss": 1.8})
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0] == {"step": 1, "loss": 2.5, "grad_norm": None}  # NaN is not JSON
    assert [s for s, _ in tracker.logged] == [1, 2, 3]
    assert log.series("loss") == [(1, 2.5), (2, 2.0), (3, 1.5)] and log.series("eval_loss") == [(3, 1.8)]
    # a resume from a checkpoint taken at step 2 forgets step 3, in memory and on disk
    log.truncate(2)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert MetricsLog(tmp_path / "metrics.jsonl", tracker).series("loss") == [(1, 2.5), (2, 2.0)]
    plot_loss(log, tmp_path / "loss.png", "test")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_no_wandb_section_means_a_null_tracker(tmp_path):
    assert isinstance(open_tracker(None, run_id="x", name="x", config={}, work_dir=tmp_path), NullTracker)
    disabled = Wandb(project="p", mode="disabled")
    assert isinstance(open_tracker(disabled, run_id="x", name="x", config={}, work_dir=tmp_path), NullTracker)


def test_online_wandb_needs_the_key_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(InvalidInput, match="WANDB_API_KEY"):
        WandbTracker(Wandb(project="p", mode="online"), run_id="x", name="x", config={}, work_dir=tmp_path)


def test_train_with_wandb_offline_keeps_the_run_with_the_outputs(make_run, tiny_llama, monkeypatch):
    import wandb

    names = []
    real_init = wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kw: names.append(kw["name"]) or real_init(**kw))
    run = make_run(
        model={"hf": str(tiny_llama)},
        train={"maxSteps": 2, "batchSize": 2, "maxLength": 64, "learningRate": 1e-4,
               "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        splits={"train": chat_rows(4)},
        tracking={"wandb": {"project": "frames", "runName": "{run_name}-{method}-{learning_rate}-r{lora_r}"}},
    )
    manifest = run.execute()
    assert names == ["tiny-sft-0.0001-r4"]
    paths = [f["path"] for f in manifest["files"]]
    assert any(p.startswith("wandb/") and p.endswith(".wandb") for p in paths), paths
    assert "metrics.jsonl" in paths and "loss.png" in paths  # written with W&B on, too
