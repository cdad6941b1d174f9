"""A tiny GGUF file: a small random Llama's F32 weights, in llama.cpp's layout, with the tokenizer
metadata (vocabulary, merges, chat template) of the packaged SmolLM2 GGUF."""

from __future__ import annotations

from pathlib import Path


def _permute(weights, n_head: int):
    """llama.cpp's row order for q/k (rotary halves interleaved); transformers undoes it on load."""
    rows = weights.shape[0] // n_head // 2
    return weights.reshape(n_head, 2, rows, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def write_tiny_gguf(model_dir: Path, tokenizer_gguf: Path, out: Path) -> Path:
    import torch
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = model.config
    writer = GGUFWriter(str(out), "llama")
    writer.add_uint32("llama.block_count", cfg.num_hidden_layers)
    writer.add_uint32("llama.context_length", cfg.max_position_embeddings)
    writer.add_uint32("llama.embedding_length", cfg.hidden_size)
    writer.add_uint32("llama.feed_forward_length", cfg.intermediate_size)
    writer.add_uint32("llama.attention.head_count", cfg.num_attention_heads)
    writer.add_uint32("llama.attention.head_count_kv", cfg.num_key_value_heads)
    writer.add_uint32("llama.rope.dimension_count", cfg.hidden_size // cfg.num_attention_heads)
    writer.add_float32("llama.rope.freq_base", cfg.rope_parameters["rope_theta"])
    writer.add_float32("llama.attention.layer_norm_rms_epsilon", cfg.rms_norm_eps)
    writer.add_uint32("llama.vocab_size", cfg.vocab_size)
    for name, field in GGUFReader(str(tokenizer_gguf)).fields.items():
        if name.startswith("tokenizer."):
            array = field.types[0] == GGUFValueType.ARRAY
            writer.add_key_value(name, field.contents(), field.types[0], field.types[-1] if array else None)

    state = {k: v.numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    names = {"self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        q, k = state[p + "self_attn.q_proj.weight"], state[p + "self_attn.k_proj.weight"]
        writer.add_tensor(f"blk.{i}.attn_q.weight", _permute(q, cfg.num_attention_heads))
        writer.add_tensor(f"blk.{i}.attn_k.weight", _permute(k, cfg.num_key_value_heads))
        for hf, gg in names.items():
            writer.add_tensor(f"blk.{i}.{gg}.weight", state[p + hf + ".weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
