"""The real models: SmolLM2-135M-Instruct from the packaged GGUF, MiniLM from its package."""

from __future__ import annotations

import pytest
from tests.train.trainkit import MINILM, SMOLLM2, chat_rows, classification_rows

from jobs.common import modelload
from jobs.common.resolve import package_file
from jobs.common.store import open_store

pytestmark = pytest.mark.slow


def test_smollm2_gguf_dequantized_once_answers_sensibly(tmp_path, monkeypatch):
    import torch

    store = open_store((tmp_path / "store").as_uri())
    gguf = package_file(SMOLLM2)
    first = modelload.gguf_model_dir(store, gguf, tmp_path / "pod-1")

    def refuse(*args):
        raise AssertionError("dequantized twice")

    monkeypatch.setattr(modelload, "dequantize_gguf", refuse)
    second = modelload.gguf_model_dir(store, gguf, tmp_path / "pod-2")
    model, tokenizer = modelload.load_causal_lm(second)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=16, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0][prompt["input_ids"].shape[1]:])
    assert (first / "model.safetensors").stat().st_size == (second / "model.safetensors").stat().st_size


def test_smollm2_lora_sft_few_steps_loss_falls(make_run):
    rows = chat_rows(32)
    run = make_run(model={"gguf": SMOLLM2},
                   train={"maxSteps": 6, "batchSize": 4, "learningRate": 0.001, "maxLength": 256,
                          "checkpointEvery": 3, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
                   splits={"train": rows, "val": chat_rows(4)})
    manifest = run.execute()
    m = manifest["metrics"]
    assert m["steps"] == 6 and m["lastLoss"] < m["firstLoss"]
    assert "adapter/adapter_model.safetensors" in {f["path"] for f in manifest["files"]}


def test_minilm_classification_reports_f1_macro(make_run):
    run = make_run(model={"hf": MINILM},
                   train={"method": "classification", "epochs": 4, "batchSize": 8, "learningRate": 0.002,
                          "maxLength": 64, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
                   splits={"train": classification_rows(48), "val": classification_rows(9, 100),
                           "test": classification_rows(9, 200)},
                   fmt="classification")
    m = run.execute()["metrics"]
    assert m["testF1Macro"] >= 0.8 and m["valF1Macro"] >= 0.8, m
    assert m["lastLoss"] < m["firstLoss"] and m["bestCheckpoint"].startswith("checkpoint-")
