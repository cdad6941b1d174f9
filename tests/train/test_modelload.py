"""The base model loader: GGUF dequantized once and cached in the store, s3:// model folders,
a plain error where the hub is unreachable, and the causal-LM (+ adapter) loader."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from tests.train.trainkit import SMOLLM2, chat_rows
from ggufmini import write_tiny_gguf

from jobs.common import modelload
from jobs.common.artifacts import read_tree
from jobs.common.resolve import materialize, package_file
from jobs.common.spec import BaseModelSource
from jobs.common.store import open_store


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_llama) -> Path:
    return write_tiny_gguf(tiny_llama, package_file(SMOLLM2), tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def dequantize_calls(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = modelload.dequantize_gguf

    def counting(gguf: Path, out: Path) -> None:
        calls.append(gguf)
        real(gguf, out)

    monkeypatch.setattr(modelload, "dequantize_gguf", counting)
    return calls


def ctx_for(model: dict, store, tmp: Path) -> SimpleNamespace:
    """What base_model_dir reads from a StepContext."""
    scratch = tmp / "scratch"
    return SimpleNamespace(spec=SimpleNamespace(model=BaseModelSource.model_validate(model)), store=store,
                           scratch=scratch, resolve=lambda loc: materialize(loc, tmp, scratch))


def test_gguf_is_dequantized_once_then_reused_from_the_store(tmp_path, tiny_gguf, tiny_llama, dequantize_calls):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, LlamaForCausalLM

    store = open_store((tmp_path / "store").as_uri())
    first = modelload.gguf_model_dir(store, tiny_gguf, tmp_path / "pod-1")
    prefix = f"cache/models/{modelload.gguf_fingerprint(tiny_gguf)}"
    manifest = read_tree(store, prefix)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {f["path"] for f in manifest["files"]}
    assert len(dequantize_calls) == 1

    second = modelload.gguf_model_dir(store, tiny_gguf, tmp_path / "pod-2")  # a new pod: nothing local
    assert len(dequantize_calls) == 1 and second != first
    assert (second / "model.safetensors").read_bytes() == (first / "model.safetensors").read_bytes()

    # the weights are the original ones (q/k un-permuted), in the saved precision
    original = LlamaForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).state_dict()
    saved = load_file(second / "model.safetensors")
    assert saved["model.layers.0.self_attn.q_proj.weight"].dtype == torch.bfloat16
    for name, tensor in saved.items():
        assert torch.equal(tensor, original[name].to(torch.bfloat16)), name
    # the tokenizer and its chat template survive the round trip
    before, after = AutoTokenizer.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(second)
    messages = chat_rows(1)[0]["messages"]
    assert after.apply_chat_template(messages, tokenize=False) == before.apply_chat_template(messages, tokenize=False)
    assert after("Hello there, Berlin")["input_ids"] == before("Hello there, Berlin")["input_ids"]


def test_corrupt_model_cache_is_rebuilt(tmp_path, tiny_gguf, dequantize_calls, caplog):
    store = open_store((tmp_path / "store").as_uri())
    modelload.gguf_model_dir(store, tiny_gguf, tmp_path / "pod-1")
    key = f"cache/models/{modelload.gguf_fingerprint(tiny_gguf)}/model.safetensors"
    data = bytearray(store.get_bytes(key))
    data[-1] ^= 0xFF
    store.put_bytes(key, bytes(data))
    with caplog.at_level(logging.WARNING):
        rebuilt = modelload.gguf_model_dir(store, tiny_gguf, tmp_path / "pod-2")
    assert len(dequantize_calls) == 2 and "is corrupt" in caplog.text
    assert store.get_bytes(key) == (rebuilt / "model.safetensors").read_bytes()


def test_train_from_gguf_reuses_the_cache_on_the_next_run(make_run, tiny_gguf, dequantize_calls, monkeypatch):
    train = {"maxSteps": 1, "batchSize": 2, "maxLength": 64, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    run = make_run(model={"gguf": str(tiny_gguf)}, train=train, splits={"train": chat_rows(4)})
    assert run.execute()["metrics"]["steps"] == 1 and len(dequantize_calls) == 1
    monkeypatch.setenv("FT_FORCE", "1")
    run.env["FT_SCRATCH"] = str(run.tmp / "next-pod")
    assert run.execute()["metrics"]["steps"] == 1 and len(dequantize_calls) == 1


def test_hf_model_folder_from_s3(tmp_path, tiny_llama, s3_bucket):
    store = open_store(f"s3://{s3_bucket}")
    for f in tiny_llama.iterdir():
        store.put_file(f"models/tiny/{f.name}", f)
    local = modelload.base_model_dir(ctx_for({"hf": f"s3://{s3_bucket}/models/tiny"}, store, tmp_path))
    assert (local / "config.json").read_bytes() == (tiny_llama / "config.json").read_bytes()
    model, tokenizer = modelload.load_causal_lm(local)
    assert model.config.hidden_size == 32 and tokenizer.pad_token is not None


def test_unreachable_hub_says_so_and_suggests_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    store = open_store((tmp_path / "store").as_uri())
    with pytest.raises(modelload.HubUnreachable) as info:
        modelload.base_model_dir(ctx_for({"hub": "HuggingFaceTB/SmolLM2-135M-Instruct"}, store, tmp_path))
    message = info.value.message
    assert "hub is unreachable" in message and "model.hf" in message and "model.gguf" in message


def test_load_causal_lm_applies_the_adapter(tmp_path, tiny_llama):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    adapter = tmp_path / "adapter"
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(adapter)

    plain, _ = modelload.load_causal_lm(tiny_llama)
    tuned, tokenizer = modelload.load_causal_lm(tiny_llama, adapter)
    assert isinstance(tuned, PeftModel) and tokenizer.name_or_path == str(adapter)
    ids = tokenizer("What is the capital of Germany?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert not torch.allclose(plain(ids).logits, tuned(ids).logits)
