"""Per-GPU memory of a train step, before any GPU is asked for: `ftctl estimate`, and the
warning of `ftctl validate`. Pure arithmetic over the model's shape and the spec.

What is counted, per process, in the dtypes the train step uses on a GPU (bfloat16 compute):

| part | full fine-tune | LoRA | QLoRA (4-bit) |
|---|---|---|---|
| base weights | 2 B/param | 2 B/param, frozen | 0.5 B/param for the decoder's linear weights + their NF4 constants; the rest (embeddings, norms) 4 B: prepare_model_for_kbit_training upcasts it |
| gradients | 2 B/param | LoRA params only, 4 B | LoRA params only, 4 B |
| AdamW states | 2 x 2 B/param (the weights' dtype) | 2 x 4 B per LoRA param | 2 x 4 B per LoRA param |
| LoRA weights | - | 4 B/param (peft keeps adapters in float32) | 4 B/param |

fsdp shards weights, gradients and optimizer states over all processes (divided by the world
size); ddp keeps a whole copy in each. Activations are per process and not sharded: per decoder
layer 34 x seq x batch x hidden bytes in 16-bit (Korthikanti et al. 2022, without the attention
scores that sdpa never stores), or only the layer's 2-byte input when activations are
checkpointed (QLoRA, and fsdp on a GPU) plus one layer recomputed; and the float32 logits with
their gradient. CUDA's context, the allocator's fragmentation and kernels' workspaces come on top:
the estimate is a floor, not a promise.

Seed figures this reproduces: 8B full = 64 GB of weights, gradients and optimizer states
(the seed counts 4-byte weights and gradients; bfloat16 weights, gradients and AdamW states
come to the same 8 B/param); 8B QLoRA = 4 GB of weights; 70B QLoRA = 35 GB of weights, which
two 24 GB GPUs hold only sharded (fsdp), not replicated (ddp).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common.errors import InvalidInput
from jobs.common.spec import TrainStep

GB = 1e9
NF4_BYTES = 0.5
# NF4 with double quantization: one 8-bit absmax per 64 weights, its own constants per 256 blocks.
NF4_CONSTANT_BYTES = (8 + 32 / 256) / 64 / 8
ACTIVATION_FACTOR = 34  # bytes per layer per token per hidden unit, 16-bit, no stored attention scores
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer's size; only `params` is known when the shape is not."""

    params: int
    hidden: int | None = None
    layers: int | None = None
    intermediate: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    vocab: int | None = None
    tied_embeddings: bool = True

    @property
    def known(self) -> bool:
        return self.layers is not None

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer (Llama, Mistral, Qwen)."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def linear_params(self) -> int:
        """Parameters of the decoder's linear layers: what 4-bit quantization quantizes."""
        if not self.known:
            return self.params  # nothing else is known: count every weight as a linear one
        return self.layers * sum(a * b for a, b in self.linears().values())


def shape_from_counts(hidden: int, layers: int, intermediate: int, heads: int, kv_heads: int | None,
                      vocab: int, head_dim: int | None = None, tied: bool = False) -> ModelShape:
    kv_heads = kv_heads or heads
    head_dim = head_dim or hidden // heads
    shape = ModelShape(0, hidden, layers, intermediate, heads, kv_heads, head_dim, vocab, tied)
    norms = layers * 2 * hidden + hidden
    embeddings = vocab * hidden * (1 if tied else 2)
    return ModelShape(**{**shape.__dict__, "params": shape.linear_params() + norms + embeddings})


def shape_from_hf_config(config: dict[str, Any], where: str) -> ModelShape:
    need = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "vocab_size")
    missing = [k for k in need if not isinstance(config.get(k), int)]
    if missing:
        raise InvalidInput(f"{where}: no {', '.join(missing)}: not a decoder this estimate knows; pass --params")
    return shape_from_counts(
        config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"], config["num_attention_heads"],
        config.get("num_key_value_heads"), config["vocab_size"], config.get("head_dim"),
        bool(config.get("tie_word_embeddings", False)),
    )


def shape_from_gguf(path: Path) -> ModelShape:
    """From a GGUF file's metadata, with the exact parameter count of its tensors."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    fields = reader.fields

    def value(key: str) -> Any:
        field = fields.get(key)
        return field.contents() if field is not None else None

    arch = value("general.architecture")
    counts = {name: value(f"{arch}.{key}") for name, key in (
        ("hidden", "embedding_length"), ("layers", "block_count"), ("intermediate", "feed_forward_length"),
        ("heads", "attention.head_count"), ("kv_heads", "attention.head_count_kv"))}
    vocab = value(f"{arch}.vocab_size") or len(fields["tokenizer.ggml.tokens"].data)
    if not all(isinstance(v, int) for k, v in counts.items() if k != "kv_heads"):
        raise InvalidInput(f"{path}: GGUF metadata of architecture {arch!r} lacks the sizes this estimate needs; pass --params")
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    shape = shape_from_counts(**counts, vocab=vocab, tied=tied)
    return ModelShape(**{**shape.__dict__, "params": sum(int(t.n_elements) for t in reader.tensors)})


def shape_from_path(path: Path) -> ModelShape:
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise InvalidInput(f"{path}: no config.json; pass --params")
        try:
            return shape_from_hf_config(json.loads(config.read_text()), str(config))
        except json.JSONDecodeError as err:
            raise InvalidInput(f"{config}: not valid JSON ({err})") from None
    if path.is_file():
        return shape_from_gguf(path)
    raise InvalidInput(f"{path}: no such model file or folder; pass --params")


def parse_params(text: str) -> int:
    """'8B', '70b', '135M', '1.5e9' -> a parameter count."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmbt]?)\s*", text.lower())
    if not m:
        raise InvalidInput(f"--params {text!r}: give a count such as 8B, 70B or 135M")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2)])


def lora_params(shape: ModelShape, r: int, targets: list[str] | str) -> int:
    """Trainable LoRA parameters: r x (in + out) per adapted linear layer. Without the shape, those
    of all-linear adapters on a Llama-like decoder of that size: 12 h^2 weights per layer and h/128
    layers give h, and its seven linears add up to 19 h of in + out features per layer (within 10%
    of Llama 3's 8B and 70B)."""
    if not shape.known:
        hidden = (shape.params * 128 / 12) ** (1 / 3)
        return int(19 * r * hidden * hidden / 128)
    linears = shape.linears()
    names = list(linears) if targets == "all-linear" else [t for t in targets if t in linears]
    return shape.layers * sum(r * sum(linears[n]) for n in names)


@dataclass(frozen=True)
class Estimate:
    method: str  # full, lora, qlora
    strategy: str
    world_size: int
    weights: float  # bytes per process
    gradients: float
    optimizer: float
    adapters: float
    activations: float | None  # None: the model's shape is unknown
    trainable: int
    checkpointed: bool

    @property
    def states(self) -> float:
        """Weights, gradients, optimizer states and adapters: what the seed's figures count."""
        return self.weights + self.gradients + self.optimizer + self.adapters

    @property
    def total(self) -> float:
        return self.states + (self.activations or 0.0)


def estimate(shape: ModelShape, cfg: TrainStep) -> Estimate:
    dist = cfg.distributed
    world = dist.world_size
    shard = world if dist.strategy == "fsdp" else 1
    checkpointed = cfg.quantization == "4bit" or (dist.strategy == "fsdp" and world > 1)
    if cfg.lora is None:
        method, trainable = "full", shape.params
        weights, gradients, optimizer, adapters = 2.0 * shape.params, 2.0 * shape.params, 4.0 * shape.params, 0.0
    else:
        trainable = lora_params(shape, cfg.lora.r, cfg.lora.target_modules)
        gradients, optimizer, adapters = 4.0 * trainable, 8.0 * trainable, 4.0 * trainable
        if cfg.quantization == "4bit":
            method = "qlora"
            quantized = shape.linear_params()
            weights = quantized * (NF4_BYTES + NF4_CONSTANT_BYTES) + 4.0 * (shape.params - quantized)
        else:
            method, weights = "lora", 2.0 * shape.params
    return Estimate(
        method=method, strategy=dist.strategy, world_size=world,
        weights=weights / shard, gradients=gradients / shard, optimizer=optimizer / shard, adapters=adapters / shard,
        activations=activation_bytes(shape, cfg.batch_size, cfg.max_length, checkpointed), trainable=trainable,
        checkpointed=checkpointed,
    )


def activation_bytes(shape: ModelShape, batch: int, seq: int, checkpointed: bool) -> float | None:
    if not shape.known:
        return None
    tokens = batch * seq
    layer = ACTIVATION_FACTOR * tokens * shape.hidden
    layers = (2 * tokens * shape.hidden * shape.layers + layer) if checkpointed else layer * shape.layers
    logits = 2 * 4 * tokens * shape.vocab  # float32 logits and their gradient
    return float(layers + logits)


def parse_memory(quantity: str) -> float:
    """A Kubernetes quantity (80Gi, 24G, 81920Mi) in bytes."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|Ki|Mi|Gi|Ti|M|G|T)?", quantity.strip())
    if not m:
        raise InvalidInput(f"{quantity!r}: not a memory quantity such as 80Gi or 24G")
    units = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return float(m.group(1)) * units[m.group(2)]
