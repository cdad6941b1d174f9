"""Tiny random models built from a config, shared by the suites that need a causal LM."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_tiny_llama(out: Path, tokenizer: Any, **overrides: Any) -> None:
    """A 2-layer, 32-wide random Llama sized to `tokenizer`, saved as an HF model directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.2,  # at the default 0.02 the logits are near uniform and LoRA cannot move them
        **overrides,
    )
    LlamaForCausalLM(config).save_pretrained(out)
