"""Convert, quantize and smoke-test with the real llama.cpp (llama-cpp-python + its converter).

Marked `llamacpp`: skipped, with the reason, where `make llamacpp` has not run.
"""

from __future__ import annotations

import json
import re

import pytest

from jobs.common import artifacts
from jobs.common.errors import FtError, InvalidInput
from jobs.common.quant import QUANT_TYPES
from jobs.common.stepctx import execute
from jobs.gguf import convert, quantize, run, smoke
from jobs.gguf.run import run_step

pytestmark = pytest.mark.llamacpp

CASES = [
    {"id": "a", "messages": [{"role": "user", "content": "What colour is the sky?"}], "expected": "Blue."},
    {"id": "b", "messages": [{"role": "user", "content": "Name a fruit."}], "expected": "Apple."},
]


def test_the_shipped_torch_and_transformers_are_newer_than_the_converters_pins():
    # llama.cpp pins torch 2.11 / transformers 4.57; the tests in this file convert with what we ship.
    found = " ".join(convert.version_mismatches(convert.converter_dir()))
    assert "torch: the converter pins" in found and "transformers: the converter pins" in found


def test_quant_names_are_llama_cpp_ftypes():
    import llama_cpp

    for name, value in QUANT_TYPES.items():
        constant = f"LLAMA_FTYPE_{name}" if name == "ALL_F32" else f"LLAMA_FTYPE_MOSTLY_{name}"
        assert getattr(llama_cpp, constant) == value, name
    assert {"Q4_K_M", "Q5_K_M", "Q8_0"} <= set(QUANT_TYPES)


@pytest.fixture(scope="module")
def f16_gguf(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("convert") / "tiny-F16.gguf"
    convert.convert(tiny_llama, out, "f16", out.with_suffix(".log"))
    return out


def assert_same_logits(gguf_file, model_dir, tolerance=0.05):
    import llama_cpp
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = "The quick brown fox jumps"
    tokens = AutoTokenizer.from_pretrained(model_dir)(text)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        want = model(torch.tensor([tokens])).logits[0].numpy()
    llm = llama_cpp.Llama(model_path=str(gguf_file), n_ctx=64, logits_all=True, verbose=False)
    try:
        assert llm.tokenize(text.encode(), add_bos=False) == tokens
        llm.eval(tokens)
        got = np.array(llm.scores[: len(tokens)])
    finally:
        llm.close()
    assert np.abs(got - want).max() < tolerance
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_converted_f16_computes_the_same_logits_as_transformers(f16_gguf, tiny_llama):
    assert_same_logits(f16_gguf, tiny_llama)


@pytest.mark.parametrize("model_type", ["mistral", "granite"])
def test_other_architectures_convert_with_the_shipped_torch_and_transformers(model_type, make_tiny_llama, tmp_path):
    model = make_tiny_llama(tmp_path / model_type, model_type=model_type)
    out = tmp_path / f"{model_type}.gguf"
    convert.convert(model, out, "f16", tmp_path / "log")
    assert_same_logits(out, model)


@pytest.mark.parametrize("quant", ["Q4_K_M", "Q8_0", "Q5_K_M"])
def test_quantize_smoke_and_read_back(f16_gguf, tmp_path, quant):
    out = tmp_path / f"tiny-{quant}.gguf"
    quantize.quantize(f16_gguf, out, quant)
    assert out.stat().st_size < f16_gguf.stat().st_size
    result = smoke.smoke_test(out, CASES, n_ctx=256, max_tokens=8)
    # 2 layers x 9 tensors + token embeddings + output norm; the output layer is tied.
    assert (result["architecture"], result["tensorCount"]) == ("llama", 20)
    assert (result["fileType"], result["fileTypeName"]) == (QUANT_TYPES[quant], quant)
    assert result["hasChatTemplate"]
    assert [a["id"] for a in result["answers"]] == ["a", "b"]
    for answer in result["answers"]:
        assert answer["chatFormat"] == "chat_template.default"  # the GGUF's own template
        assert answer["completionTokens"] > 0 and answer["tokensPerSec"] > 0
        # The ChatML prompt with SmolLM2's default system prompt, tokenized by llama.cpp.
        assert answer["promptTokens"] > 20
    assert result["tokensPerSec"] > 0


def test_quantization_needing_an_importance_matrix_says_so(f16_gguf, tmp_path):
    with pytest.raises(FtError, match="requires an importance matrix") as err:
        quantize.quantize(f16_gguf, tmp_path / "x.gguf", "IQ2_XXS")
    assert err.value.code == "QuantizeFailed"
    assert list(tmp_path.iterdir()) == []


def test_unsupported_architecture_lists_the_supported_ones(tiny_llama, tmp_path):
    import shutil

    model = tmp_path / "odd"
    shutil.copytree(tiny_llama, model)
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["NoSuchNetForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    root = convert.converter_dir()
    with pytest.raises(InvalidInput, match="architecture NoSuchNetForCausalLM is not supported") as err:
        convert.check_supported(model, root)
    assert err.value.code == "UnsupportedArchitecture"
    supported = err.value.message.split("Architectures it converts: ")[1].split(", ")
    assert {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"} <= set(supported)
    # The converter's own message, when it is run anyway.
    with pytest.raises(InvalidInput, match="Model NoSuchNetForCausalLM is not supported") as err:
        convert.convert(model, tmp_path / "odd.gguf", "f16", tmp_path / "log")
    assert "LlamaForCausalLM" in err.value.message


def test_the_step_end_to_end(gguf_run, tiny_llama, tiny_lora, tmp_path):
    pytest.importorskip("jobs.common.modelload", reason="needs jobs.common.modelload.base_model_dir")
    # Trained with QLoRA: the merge still goes into the unquantized base.
    store = gguf_run(tiny_llama, adapter=tiny_lora,
                     gguf={"quantizations": ["Q4_K_M", "Q8_0"], "modelName": "tiny-chat"},
                     train_config={"method": "sft", "train": {"quantization": "4bit"}})
    manifest = execute("gguf", run_step)

    outputs = manifest["outputs"]
    assert outputs == {
        "gguf:Q4_K_M": "tiny-chat-Q4_K_M.gguf",
        "gguf:Q8_0": "tiny-chat-Q8_0.gguf",
        "modelfile": "Modelfile",
        "smoke": "smoke.json",
        "merged": "merged/",
    }
    files = {f["path"]: f for f in manifest["files"]}
    assert {"tiny-chat-Q4_K_M.gguf", "tiny-chat-Q8_0.gguf", "Modelfile", "smoke.json",
            "merged/model.safetensors", "merged/tokenizer.json"} <= set(files)
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) and f["size"] > 0 for f in files.values())

    metrics = manifest["metrics"]
    assert metrics["ollamaCreate"] == "ollama create tiny-chat -f Modelfile"
    assert metrics["mergeMaxAbsDiff"] <= metrics["mergeTolerance"] < metrics["adapterMaxAbsEffect"]
    assert metrics["trainQuantization"] == "4bit" and metrics["mergeDtype"] == "float16"
    assert metrics["architecture"] == "LlamaForCausalLM"
    assert metrics["versions"]["llama-cpp-python"] and metrics["converter"].startswith("llama-cpp-python ")
    assert any(m.startswith("transformers:") for m in metrics["converterPinMismatches"])
    assert metrics["files"]["Q8_0"]["sizeBytes"] == files["tiny-chat-Q8_0.gguf"]["size"]
    assert metrics["modelfile"]["stop"] == ["<|im_end|>"] and metrics["modelfile"]["templateConverted"]
    assert set(metrics["smoke"]) == {"Q4_K_M", "Q8_0"}

    local = artifacts.fetch(store, manifest, tmp_path / "fetched")  # verifies every sha256
    smoke_json = json.loads((local / "smoke.json").read_text())
    assert [s["quantization"] for s in smoke_json] == ["Q4_K_M", "Q8_0"]
    first = smoke_json[0]["answers"]
    assert [a["id"] for a in first] == ["t1", "t2"] and [a["expected"] for a in first] == ["Blue.", "Apple."]
    assert first[1]["messages"][0] == {"role": "system", "content": "Be brief."}
    modelfile = (local / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./tiny-chat-Q4_K_M.gguf\n# or: FROM ./tiny-chat-Q8_0.gguf\n")
    assert smoke.readback(local / "tiny-chat-Q8_0.gguf")["fileTypeName"] == "Q8_0"
    merged_config = json.loads((local / "merged" / "config.json").read_text())
    assert merged_config["dtype"] == "float16" and "quantization_config" not in merged_config


def test_low_disk_stops_the_step_before_merging(gguf_run, tiny_llama, tiny_lora, tmp_path, monkeypatch):
    from collections import namedtuple

    pytest.importorskip("jobs.common.modelload", reason="needs jobs.common.modelload.base_model_dir")
    store = gguf_run(tiny_llama, adapter=tiny_lora)
    size = run.model_bytes(tiny_llama)
    monkeypatch.setattr(run.shutil, "disk_usage", lambda _: namedtuple("U", "total used free")(0, 0, 2 * size))
    with pytest.raises(InvalidInput, match="not enough disk space"):
        execute("gguf", run_step)
    assert artifacts.read_manifest(store, "default", "tiny", "gguf") is None
    assert not (tmp_path / "scratch" / "out" / "merged").exists()
