"""SFT with LoRA on a tiny Llama: the loss moves and every output is committed."""

from __future__ import annotations

import pytest
from tests.train.trainkit import chat_rows

from jobs.common.progress import parse_line

PACK_REPORT = {"format": "openai_chat", "counts": {"in": 15, "out": 12, "dropped": 3, "train": 8, "val": 2, "test": 2},
               "dropped": {"duplicate": {"count": 3, "description": "exact copies", "ids": ["a", "b", "c"]}},
               "labels": None, "warnings": []}
FAST = {"maxSteps": 2, "batchSize": 2, "learningRate": 0.01, "maxLength": 64, "checkpointEvery": 50,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}


@pytest.mark.parametrize("packing", [True, False])
def test_sft_lora_trains_and_commits(make_run, tiny_llama, packing, capsys):
    run = make_run(model={"hf": str(tiny_llama)}, train={**FAST, "packing": packing, "evalEvery": 1},
                   splits={"train": chat_rows(8), "val": chat_rows(2), "test": chat_rows(2)}, pack_report=PACK_REPORT)
    manifest = run.execute()
    paths = {f["path"] for f in manifest["files"]}
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json", "adapter/tokenizer.json",
            "train_config.json", "metrics.jsonl", "loss.png"} <= paths
    assert manifest["outputs"] == {"adapter": "adapter/", "lossPlot": "loss.png", "trainingReport": "training_report.md"}
    m = manifest["metrics"]
    assert m["steps"] == 2 and m["firstLoss"] != m["lastLoss"]
    assert m["trainTokensPerSec"] > 0 and m["evalLoss"] > 0
    records = run.metrics()
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert all(r["tokens_per_sec"] > 0 and r["lr"] is not None and "grad_norm" in r for r in records if "loss" in r)
    assert [r["step"] for r in records if "eval_loss" in r] == [1, 2, 2]  # every step, then the final one
    assert run.read("loss.png")[:8] == b"\x89PNG\r\n\x1a\n"
    progress = [m for m in map(parse_line, capsys.readouterr().out.splitlines()) if m and m["type"] == "progress"]
    assert [(p["current"], p["total"], p["percent"]) for p in progress] == [(1, 2, 50.0), (2, 2, 100.0)]
    assert progress[0]["etaSeconds"] > 0 and progress[-1]["etaSeconds"] == 0
    assert all(p["loss"] > 0 and p["tokensPerSec"] > 0 for p in progress)
    report = run.read("training_report.md").decode()
    assert "15 rows in, 12 kept, 3 dropped" in report and "| duplicate | 3 | exact copies |" in report
    assert "| learningRate | 0.01 |" in report and "| lora.r | 4 |" in report and "| packing | " in report
    assert "| optimizer steps | 2 |" in report and "| GPUs | none |" in report and "torch 2." in report
    assert "![train and val loss](loss.png)" in report  # the PNG beside it
    assert "No evaluate step has run for this model yet" in report
