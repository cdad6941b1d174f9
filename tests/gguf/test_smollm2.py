"""The whole step on the real SmolLM2-135M-Instruct (dequantized from the packaged GGUF) with a small LoRA.

Slow (a couple of minutes on 2 cores) and needs llama.cpp: the exported files must
still answer plain questions.
"""

from __future__ import annotations

import json

import pytest
from ggufkit import save_smollm2

from jobs.common.stepctx import execute
from jobs.gguf.run import run_step

pytestmark = [pytest.mark.slow, pytest.mark.llamacpp]

ROWS = [
    {"id": "q1", "messages": [{"role": "user", "content": "What is the capital of France?"},
                              {"role": "assistant", "content": "The capital of France is Paris."}]},
    {"id": "q2", "messages": [{"role": "user", "content": "What is the capital of Germany?"},
                              {"role": "assistant", "content": "The capital of Germany is Berlin."}]},
]


def small_lora(base_dir, out):
    """A LoRA whose B matrices are small noise: it moves the logits a little, as a short training does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1e-3)
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    return out


def test_smollm2_exports_and_still_answers(gguf_run, tmp_path):
    base = save_smollm2(tmp_path / "smollm2")
    adapter = small_lora(base, tmp_path / "adapter")
    gguf_run(base, adapter=adapter, rows=ROWS,
             gguf={"quantizations": ["Q4_K_M", "Q8_0"], "modelName": "smollm2-tuned"})
    manifest = execute("gguf", run_step)

    metrics = manifest["metrics"]
    print(json.dumps({k: metrics[k] for k in ("mergeMaxAbsDiff", "mergeTolerance", "adapterMaxAbsEffect",
                                              "castMaxAbsDiff", "files", "smoke", "smokeAnswers", "convertedBytes")},
                     indent=1))
    assert metrics["mergeMaxAbsDiff"] <= metrics["mergeTolerance"] < metrics["adapterMaxAbsEffect"]
    assert metrics["architecture"] == "LlamaForCausalLM"
    assert metrics["modelfile"]["stop"] == ["<|im_end|>"] and metrics["modelfile"]["templateConverted"]
    for quant in ("Q4_K_M", "Q8_0"):
        assert metrics["smoke"][quant]["tensorCount"] == 272  # as in the GGUF SmolLM2 ships with
        assert all(metrics["smokeAnswers"][quant]) and metrics["smoke"][quant]["tokensPerSec"] > 0
    # 8 bits keep the answers; 4 bits of a 135M model may not (the packaged Q4_1 itself answers the
    # first question in French), so only Q8_0 is held to them.
    assert "Paris" in metrics["smokeAnswers"]["Q8_0"][0] and "Berlin" in metrics["smokeAnswers"]["Q8_0"][1]
    assert metrics["files"]["Q4_K_M"]["sizeBytes"] < metrics["files"]["Q8_0"]["sizeBytes"] < metrics["convertedBytes"]
