"""KTO and ORPO with LoRA on a tiny Llama, from preference pairs and from labelled completions."""

from __future__ import annotations

import pytest
from tests.train.trainkit import QA, dpo_rows

from jobs.common.errors import InvalidData

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


def labelled_rows(n: int) -> list[dict]:
    return [{"id": f"k-{i}", "prompt": QA[i % len(QA)][0],
             "completion": QA[i % len(QA)][1] if i % 2 == 0 else "I do not know.", "label": i % 2 == 0}
            for i in range(n)]


def train(method: str, **extra) -> dict:
    return {"method": method, "maxSteps": 1, "batchSize": 2, "learningRate": 0.01, "maxLength": 96,
            "beta": 0.5, "lora": LORA, **extra}


def test_orpo_on_pairs_logs_the_preference_figures(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train=train("orpo"),
                   splits={"train": dpo_rows(4), "val": dpo_rows(2)}, fmt="dpo")
    manifest = run.execute()
    m = manifest["metrics"]
    assert m["steps"] == 1 and "evalRewardAccuracy" in m and "evalLoss" in m
    assert m["bestMetric"] == "eval_loss" and m["earlyStopped"] is False  # DPO's model selection
    assert "adapter/adapter_model.safetensors" in {f["path"] for f in manifest["files"]}
    records = [r for r in run.metrics() if "loss" in r]
    assert all({"rewards/margins", "log_odds_ratio"} <= r.keys() for r in records)


def test_kto_learns_from_labelled_completions(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train=train("kto"), splits={"train": labelled_rows(4)}, fmt="dpo")
    manifest = run.execute()
    assert manifest["metrics"]["steps"] == 1
    assert all({"kl", "rewards/chosen"} <= r.keys() for r in run.metrics() if "loss" in r)


def test_kto_takes_pairs_as_they_are_and_labelled_rows_as_conversations():
    from jobs.train.data import Split
    from jobs.train.preference import labelled_rows as kto_rows

    pairs = kto_rows(Split("train", dpo_rows(2), [1, 2]))
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": QA[0][1]}] and "label" not in pairs[0]
    labelled = kto_rows(Split("train", labelled_rows(2), [1, 2]))
    assert labelled[1] == {"prompt": [{"role": "user", "content": QA[1][0]}],
                           "completion": [{"role": "assistant", "content": "I do not know."}], "label": False}


def test_kto_labels_must_be_booleans_and_both_kinds_present(make_run, tiny_llama):
    bad = labelled_rows(4)
    bad[1]["label"] = "no"
    run = make_run(model={"hf": str(tiny_llama)}, train=train("kto"), splits={"train": bad}, fmt="dpo")
    with pytest.raises(InvalidData, match="train.jsonl line 2: label must be true"):
        run.execute()
    only_good = [r for r in labelled_rows(8) if r["label"]]
    run = make_run(model={"hf": str(tiny_llama)}, train=train("kto"), splits={"train": only_good}, fmt="dpo")
    with pytest.raises(InvalidData, match="both desirable"):
        run.execute()


def test_orpo_needs_preference_pairs():
    from pydantic import ValidationError

    from jobs.common.spec import FineTuneRunSpec

    spec = {"model": {"hf": "m"}, "data": {"sources": [{"path": "d.jsonl", "format": "openai_chat"}]},
            "steps": {"pack": {"format": "openai_chat"}, "train": train("orpo")}}
    with pytest.raises(ValidationError, match="orpo training needs dpo"):
        FineTuneRunSpec.model_validate(spec)
