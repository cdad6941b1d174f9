"""The base model as a local Hugging Face directory, whatever the spec names, and loaders for it.

    model.hf    a model folder: local path, package://<dist>/<folder>, or s3:// (downloaded)
    model.gguf  a GGUF file (path, s3://, package://<dist>/<file>). transformers will not train a
                model loaded straight from GGUF, so the file is dequantized once into an HF folder,
                which is cached in the store under cache/models/<fingerprint>/ (files first,
                manifest last, sha256-verified on every fetch) for every later step and run.
    model.hub   a Hugging Face hub id, only where the hub is reachable.

torch and transformers are imported inside the functions: `import jobs.common.*` stays light.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.common import artifacts, keys
from jobs.common.errors import IntegrityError, InvalidInput
from jobs.common.store import Store

if TYPE_CHECKING:
    from jobs.common.stepctx import RunReader

log = logging.getLogger(__name__)

CACHE_PREFIX = "cache/models"
# The precision the dequantized weights are saved in: what these models are published in, and
# half the size of float32. Loaders upcast where the device wants float32.
SAVE_DTYPE = "bfloat16"


class HubUnreachable(InvalidInput):
    code = "HubUnreachable"


def base_model_dir(ctx: RunReader) -> Path:
    """A local HF directory holding the spec's base model."""
    source = ctx.spec.model
    if source.kind == "hf":
        return _model_dir(ctx.resolve(source.hf), "model.hf")
    if source.kind == "gguf":
        gguf = ctx.resolve(source.gguf)
        if not gguf.is_file():
            raise InvalidInput(f"model.gguf: {source.gguf} is not a file")
        return gguf_model_dir(ctx.store, gguf, ctx.scratch / "models")
    return hub_model_dir(source.hub, source.revision)


def _model_dir(path: Path, field: str) -> Path:
    if not (path / "config.json").is_file():
        raise InvalidInput(f"{field}: {path} is not a Hugging Face model directory (it has no config.json)")
    return path


# --- GGUF --------------------------------------------------------------------------------------


def gguf_fingerprint(gguf: Path) -> str:
    """Identifies the dequantized folder: the GGUF's content, the converter's version, the dtype."""
    material = f"{artifacts.sha256_file(gguf)}:transformers={metadata.version('transformers')}:{SAVE_DTYPE}"
    return hashlib.sha256(material.encode()).hexdigest()


def gguf_model_dir(store: Store, gguf: Path, work: Path) -> Path:
    """The HF folder for a GGUF file: fetched from the store cache, or dequantized and cached."""
    fingerprint = gguf_fingerprint(gguf)
    prefix = keys.join(CACHE_PREFIX, fingerprint)
    dest = work / fingerprint
    manifest = artifacts.read_tree(store, prefix)
    if manifest is not None:
        try:
            artifacts.fetch(store, manifest, dest)
            log.info("base model: %s from the store cache %s/", gguf.name, prefix)
            return dest
        except IntegrityError as err:
            log.warning("base model cache %s/ is corrupt (%s); dequantizing again", prefix, err)
    building = work / f"{fingerprint}.partial"
    shutil.rmtree(building, ignore_errors=True)
    dequantize_gguf(gguf, building)
    artifacts.commit_tree(
        store,
        prefix,
        building,
        {"step": "model-cache", "source": gguf.name, "fingerprint": fingerprint, "dtype": SAVE_DTYPE},
    )
    shutil.rmtree(dest, ignore_errors=True)
    building.rename(dest)
    log.info("base model: dequantized %s and cached it at %s/", gguf.name, prefix)
    return dest


def dequantize_gguf(gguf: Path, out_dir: Path) -> None:
    """Load a GGUF file with transformers (dequantizing it) and save model and tokenizer as HF files."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            dtype=getattr(torch, SAVE_DTYPE),
            # unpack every block into a dense weight: a model kept in GGUF blocks cannot be saved or trained
            quantization_config=GgufConfig(dequantize=True),
        )
    except (ValueError, KeyError, NotImplementedError) as err:
        raise InvalidInput(f"model.gguf: transformers cannot read {gguf.name}: {err}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


# --- hub ---------------------------------------------------------------------------------------


def hub_model_dir(repo_id: str, revision: str | None) -> Path:
    """A hub snapshot (from the local HF cache when present); a plain error when the hub is unreachable."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return _model_dir(Path(snapshot_download(repo_id, revision=revision)), "model.hub")
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise InvalidInput(f"model.hub: {repo_id!r} (revision {revision or 'main'}): {err}") from None
    except (LocalEntryNotFoundError, OSError) as err:
        raise HubUnreachable(
            f"model.hub: the Hugging Face hub is unreachable from here, so {repo_id!r} cannot be "
            f"downloaded ({type(err).__name__}). Put the model where this cluster can read it and use "
            "model.hf (a local or s3:// model directory) or model.gguf (a GGUF file) instead"
        ) from None


# --- loaders shared by train, evaluate and gguf -----------------------------------------------


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def bf16_supported() -> bool:
    """bfloat16 arithmetic in hardware: a recent GPU, or a CPU with AVX512-BF16 or AMX."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def compute_dtype() -> Any:
    """The dtype weights are loaded in: bfloat16 on a GPU that has it, else float32 (training on
    CPU keeps float32 weights and computes under bfloat16 autocast where the CPU supports it)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def nf4_config(sharded: bool = False) -> Any:
    """QLoRA's 4-bit NormalFloat quantization (bitsandbytes), with bfloat16 compute. `sharded`
    (FSDP): the packed 4-bit weights are stored as bfloat16, the dtype of the rest of the model,
    because FSDP flattens and shards tensors of one dtype (bitsandbytes' FSDP-QLoRA setting)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        **({"bnb_4bit_quant_storage": torch.bfloat16} if sharded else {}),
    )


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    model_dir: Path, adapter_dir: Path | None = None, *, quantize_4bit: bool = False, sharded: bool = False
) -> tuple[Any, Any]:
    """(model, tokenizer) from an HF folder, with a peft adapter applied when given.

    The tokenizer comes from the adapter folder when it has one (training saves it there).
    Each worker of a distributed step loads onto its own GPU (LOCAL_RANK); `sharded` (FSDP) loads
    without a device map, FSDP places the shards.
    """
    from transformers import AutoModelForCausalLM

    from jobs.common import ranks

    kwargs: dict[str, Any] = {"dtype": compute_dtype()}
    device_map = None if sharded else {"": ranks.local_rank()}
    if quantize_4bit:
        kwargs.update(quantization_config=nf4_config(sharded), device_map=device_map)
    elif has_gpu() and device_map:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    tokenizer_dir = adapter_dir if adapter_dir and (adapter_dir / "tokenizer_config.json").is_file() else model_dir
    tokenizer = load_tokenizer(tokenizer_dir)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    return model, tokenizer
