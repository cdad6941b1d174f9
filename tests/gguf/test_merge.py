"""Merging a LoRA into a full-precision base, and the logits check that guards it."""

from __future__ import annotations

import json
import shutil

import pytest

from jobs.common.errors import FtError, InvalidInput, MissingInput
from jobs.gguf.merge import merge_adapter, train_quantization

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
]


def logits_of(model_or_dir, tokenizer_dir, text="Hello there, how are you?"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = model_or_dir
    if not hasattr(model, "forward"):
        model = AutoModelForCausalLM.from_pretrained(model_or_dir, dtype=torch.float32)
    enc = AutoTokenizer.from_pretrained(tokenizer_dir)(text, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_merge_matches_unmerged_adapter(tiny_llama, tiny_lora, tmp_path, dtype):
    out = tmp_path / "merged"
    figures = merge_adapter(tiny_llama, tiny_lora, out, dtype, PROMPTS)
    assert figures["mergeDtype"] == dtype and figures["mergeCheckPrompts"] == 2
    assert figures["mergeMaxAbsDiff"] <= figures["mergeTolerance"]
    # The adapter matters far more than the merge's rounding, so the check can tell them apart.
    assert figures["adapterMaxAbsEffect"] > 100 * figures["mergeTolerance"]
    # Casting to half precision changes the logits a little, and is measured.
    assert (figures["castMaxAbsDiff"] == 0) == (dtype == "float32")
    assert figures["castMaxAbsDiff"] < 0.1 * figures["adapterMaxAbsEffect"]
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == dtype and "quantization_config" not in config
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()


def test_merged_model_reloads_as_base_plus_adapter(tiny_llama, tiny_lora, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merge_adapter(tiny_llama, tiny_lora, tmp_path / "merged", "float32", PROMPTS)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, tiny_lora)
    want = logits_of(with_adapter, tiny_llama)
    got = logits_of(tmp_path / "merged", tiny_llama)
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(logits_of(tiny_llama, tiny_llama), want, atol=1e-2)


def test_a_merge_that_drops_the_adapter_fails_the_check(tiny_llama, tiny_lora, tmp_path, monkeypatch):
    from peft.tuners.tuners_utils import BaseTuner

    # unload() removes the LoRA layers without merging them: the classic silent export bug.
    monkeypatch.setattr(BaseTuner, "merge_and_unload", lambda self, **_: self.unload())
    with pytest.raises(FtError, match="merge check failed") as err:
        merge_adapter(tiny_llama, tiny_lora, tmp_path / "merged", "float32", PROMPTS)
    assert err.value.code == "MergeCheckFailed"
    assert not (tmp_path / "merged").exists()


def test_missing_adapter(tiny_llama, tmp_path):
    (tmp_path / "adapter").mkdir()
    with pytest.raises(MissingInput, match="no adapter_config.json"):
        merge_adapter(tiny_llama, tmp_path / "adapter", tmp_path / "merged", "float16", PROMPTS)


def test_adapter_for_another_model_is_rejected(tiny_lora, tmp_path, make_tiny_llama):
    other = make_tiny_llama(tmp_path / "other", hidden_size=128)
    with pytest.raises(InvalidInput, match="does not fit the base model"):
        merge_adapter(other, tiny_lora, tmp_path / "merged", "float32", PROMPTS)


def test_quantized_base_is_refused(tiny_llama, tiny_lora, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    config = json.loads((base / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (base / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidInput, match="stored quantized \\(bitsandbytes\\)"):
        merge_adapter(base, tiny_lora, tmp_path / "merged", "float16", PROMPTS)


def test_train_quantization_is_read_from_train_config(tmp_path):
    assert train_quantization(tmp_path) == "none"
    (tmp_path / "train_config.json").write_text(json.dumps({"method": "sft", "train": {"quantization": "4bit"}}))
    assert train_quantization(tmp_path) == "4bit"
