"""Packed rows: examples packed into one row do not see each other, and a batch stays rows."""

from __future__ import annotations

import pytest
import torch
from tests.train.trainkit import chat_rows

from jobs.train.packed_rows import hide_attention_mask, packed_rows_collator, train_packed_rows

PAD = 2
EXAMPLES = [[5, 17, 29, 3, 44], [8, 9, 10], [71, 72, 73, 74], [12, 13, 14, 15, 16, 18], [30, 31]]


def packed(*members: list[int]) -> dict:
    ids = [t for m in members for t in m]
    return {"input_ids": ids, "labels": list(ids), "seq_lengths": [len(m) for m in members]}


@pytest.fixture
def model(tiny_llama):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    return m


def alone(model, example: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([example])).logits[0]


def test_collator_keeps_rows_and_masks_example_boundaries():
    batch = packed_rows_collator(PAD)([packed(EXAMPLES[0], EXAMPLES[1]), packed(EXAMPLES[2])])
    assert batch["input_ids"].shape == (2, 8)  # two rows, padded to the longer one: not flattened
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 0, 0, 0, 0]]
    # The first token of each example is never a target, nor is padding.
    assert batch["labels"].tolist() == [[-100, 17, 29, 3, 44, -100, 9, 10], [-100, 72, 73, 74, -100, -100, -100, -100]]
    assert int(batch["attention_mask"].sum()) == 12  # the real tokens, for the Trainer's count


def test_packed_examples_compute_what_they_compute_alone(model):
    batch = packed_rows_collator(PAD)([packed(EXAMPLES[0], EXAMPLES[1], EXAMPLES[4]), packed(EXAMPLES[2], EXAMPLES[3])])
    model.register_forward_pre_hook(hide_attention_mask, with_kwargs=True)
    with torch.no_grad():
        logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}).logits
    for row, members in enumerate([(0, 1, 4), (2, 3)]):
        start = 0
        for i in members:
            n = len(EXAMPLES[i])
            torch.testing.assert_close(logits[row, start:start + n], alone(model, EXAMPLES[i]), atol=1e-5, rtol=1e-4)
            start += n


def test_without_the_hook_packed_examples_would_see_each_other(model):
    batch = packed_rows_collator(PAD)([packed(EXAMPLES[0], EXAMPLES[1])])
    with torch.no_grad():
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
        logits = model(**inputs, use_cache=False).logits
    second = logits[0, len(EXAMPLES[0]):len(EXAMPLES[0]) + len(EXAMPLES[1])]
    assert not torch.allclose(second, alone(model, EXAMPLES[1]), atol=1e-3)


def test_trl_packing_trains_on_rows(tiny_llama, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in chat_rows(16)])
    args = SFTConfig(output_dir=str(tmp_path), max_length=48, packing=True, per_device_train_batch_size=3,
                     use_cpu=True, report_to="none", max_steps=1)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_llama), args=args, train_dataset=dataset,
                         processing_class=tokenizer)
    train_packed_rows(trainer)
    rows = [trainer.train_dataset[i] for i in range(3)]
    batch = trainer.data_collator(rows)
    lengths = [sum(r["seq_lengths"]) for r in rows]
    assert batch["input_ids"].shape == (3, max(lengths)) and max(lengths) <= 48
    assert int(batch["attention_mask"].sum()) == sum(lengths)
    trainer.train()  # through peft's wrapper and the Trainer: the hook takes the mask away
    assert trainer.state.global_step == 1 and trainer.state.log_history[-1]["train_loss"] > 0
