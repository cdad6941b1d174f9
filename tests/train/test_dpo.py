"""DPO with LoRA on a tiny Llama: a few steps on prompt/chosen/rejected rows."""

from __future__ import annotations

from tests.train.trainkit import dpo_rows


def test_dpo_lora_few_steps(make_run, tiny_llama):
    run = make_run(
        model={"hf": str(tiny_llama)},
        train={"method": "dpo", "maxSteps": 3, "batchSize": 2, "learningRate": 0.01, "maxLength": 96,
               "beta": 0.5, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        splits={"train": dpo_rows(6), "val": dpo_rows(2)},
        fmt="dpo",
    )
    manifest = run.execute()
    assert manifest["outputs"]["adapter"] == "adapter/"
    assert "adapter/adapter_model.safetensors" in {f["path"] for f in manifest["files"]}
    m = manifest["metrics"]
    assert m["steps"] == 3 and m["firstLoss"] != m["lastLoss"]
    # the policy starts as the reference: DPO's first loss is log(2)
    assert abs(m["firstLoss"] - 0.6931) < 1e-3
    records = [r for r in run.metrics() if "loss" in r]
    assert all("rewards/margins" in r for r in records)
