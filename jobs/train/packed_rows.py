"""Packed examples trained as rows of a batch, not as one flattened sequence.

TRL packs whole examples into maxLength-token rows (best-fit decreasing) and then flattens a
batch into one sequence for the varlen flash-attention kernels. Without those kernels (any CPU,
and a GPU without flash-attn, which we do not ship) attention runs over the whole flattened
sequence, batch x maxLength tokens long, with a mask hiding the other examples: its cost grows
with (batch x maxLength)^2 instead of batch x maxLength^2. On SmolLM2-135M with 8 rows of 250
tokens that is 1.4x slower per step on a CPU (bench/train_throughput.py measures the step).

So each packed row stays a row: position ids restart at every example, the first token of an
example is not predicted from the example before it, and the model gets no attention mask (and
no KV cache), from which transformers builds a block-diagonal causal mask out of the position
ids. The collator still returns the mask, so that the Trainer (and TRL's token count) count real
tokens, not padding; a forward pre-hook takes it away before the model sees it.
"""

from __future__ import annotations

from typing import Any, Callable


def packed_rows_collator(pad_token_id: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """Collates TRL's packed examples (input_ids, seq_lengths) into padded rows with position ids."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rows = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, return_position_ids=True)

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = rows(examples)
        batch["labels"][batch["position_ids"] == 0] = -100
        return batch

    return collate


def hide_attention_mask(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Forward pre-hook: a packed batch (it has position ids) reaches the model without its mask,
    and without a KV cache, which would also turn off the block-diagonal mask."""
    if kwargs.get("position_ids") is not None:
        kwargs.pop("attention_mask", None)
        kwargs["use_cache"] = False
    return args, kwargs


def train_packed_rows(trainer: Any) -> None:
    """Switches a trainer built with TRL's packing to packed rows (TRL refuses a custom collator
    when packing, so it is swapped in afterwards)."""
    trainer.data_collator = packed_rows_collator(trainer.processing_class.pad_token_id)
    trainer.model.register_forward_pre_hook(hide_attention_mask, with_kwargs=True)
