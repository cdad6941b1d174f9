"""Bad input gets one clear error naming the field, file or line, before any weights are loaded."""

from __future__ import annotations

import pytest
from tests.train.trainkit import chat_rows, classification_rows

from jobs.common.errors import InvalidData, InvalidInput, InvalidSpec

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch):
    """Every error here must come before the (slow) model load."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("jobs.train.sft.load_causal_lm", refuse)
    monkeypatch.setattr("jobs.train.dpo.load_causal_lm", refuse)
    monkeypatch.setattr("transformers.AutoModelForSequenceClassification.from_pretrained", refuse)


def fails(run, error, *fragments):
    with pytest.raises(error) as info:
        run.execute()
    for fragment in fragments:
        assert fragment in info.value.message
    return info.value


def test_empty_training_set(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train={"lora": LORA}, splits={"train": []})
    fails(run, InvalidData, "pack/train.jsonl is empty")


def test_fewer_examples_than_one_batch(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train={"batchSize": 8, "lora": LORA}, splits={"train": chat_rows(3)})
    fails(run, InvalidData, "3 example(s), fewer than one batch", "batchSize = 8")


def test_label_never_seen_in_train(make_run, tiny_bert):
    val = classification_rows(3) + [{"id": "x", "text": "a new thing", "label": "Sports"}]
    run = make_run(model={"hf": str(tiny_bert)}, train={"method": "classification", "batchSize": 2},
                   splits={"train": classification_rows(9), "val": val}, fmt="classification")
    fails(run, InvalidData, "pack/val.jsonl line 4", "'Sports' never occurs in pack/train.jsonl")


def test_all_sequences_longer_than_max_length(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train={"maxLength": 8, "batchSize": 2, "lora": LORA},
                   splits={"train": chat_rows(4)})
    fails(run, InvalidData, "every training example is longer than steps.train.maxLength (8 tokens")


def test_unknown_target_module_lists_valid_ones(make_run, tiny_llama):
    lora = {**LORA, "targetModules": ["q_proj", "query_key_value"]}
    run = make_run(model={"hf": str(tiny_llama)}, train={"batchSize": 2, "lora": lora}, splits={"train": chat_rows(4)})
    err = fails(run, InvalidInput, "steps.train.lora.targetModules: 'query_key_value' not in this model")
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert name in err.message
    assert "lm_head" not in err.message


@pytest.mark.parametrize("lr", [0, -0.1])
def test_non_positive_learning_rate_is_a_spec_error(make_run, tiny_llama, lr):
    run = make_run(model={"hf": str(tiny_llama)}, train={"learningRate": lr}, splits={"train": chat_rows(4)})
    fails(run, InvalidSpec, "steps.train.learningRate")


def test_qlora_without_gpu_fails_before_touching_the_model(make_run, tmp_path):
    run = make_run(model={"hf": str(tmp_path / "no-such-model")}, train={"quantization": "4bit", "lora": LORA},
                   splits={"train": chat_rows(4)})
    fails(run, InvalidInput, "steps.train.quantization: 4bit", "needs a CUDA GPU")


def test_conversation_without_assistant_names_its_line(make_run, tiny_llama):
    rows = chat_rows(3) + [{"id": "u", "messages": [{"role": "user", "content": "hello?"}]}]
    run = make_run(model={"hf": str(tiny_llama)}, train={"batchSize": 2, "lora": LORA}, splits={"train": rows})
    fails(run, InvalidData, "pack/train.jsonl line 4: no assistant message")


def test_broken_json_line(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)}, train={"batchSize": 2, "lora": LORA},
                   splits={"train": chat_rows(2) + ["{not json"]})
    fails(run, InvalidData, "pack/train.jsonl line 3: not JSON")


def test_dpo_pair_without_preference(make_run, tiny_llama):
    rows = [{"id": "1", "prompt": "q", "chosen": "same", "rejected": "same"}] * 2
    run = make_run(model={"hf": str(tiny_llama)}, train={"method": "dpo", "batchSize": 2, "lora": LORA},
                   splits={"train": rows}, fmt="dpo")
    fails(run, InvalidData, "pack/train.jsonl line 1: chosen and rejected are the same")


def test_model_folder_without_config(make_run, tmp_path):
    (tmp_path / "empty-model").mkdir()
    run = make_run(model={"hf": str(tmp_path / "empty-model")}, train={"batchSize": 2, "lora": LORA},
                   splits={"train": chat_rows(4)})
    fails(run, InvalidInput, "model.hf:", "not a Hugging Face model directory")
