"""Merge a LoRA adapter into a full-precision copy of its base model, and check the merge.

The base is always loaded unquantized, also when training used QLoRA: merging
into 4-bit weights would bake their rounding into the exported model. The merge
and its check run in float32 (W + BA rounded once; 4 bytes per parameter of
memory), and the merged model is then cast to spec.steps.gguf.mergeDtype.

The check runs a few prompts through base+adapter (unmerged, as trained) and
through the merged model; their logits must agree within a tolerance. In half
precision the rounding noise of a 30-layer model is as large as a small
adapter's whole effect, so only float32 tells a correct merge from a broken one.
What the cast to mergeDtype then changes is recorded apart (castMaxAbsDiff).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common.errors import FtError, InvalidInput, MissingInput

log = logging.getLogger(__name__)

# Float32 logits may differ by ATOL + RTOL * max|logit|: the merged model rounds W + BA once,
# the unmerged one rounds W x and B(A x) separately.
ATOL, RTOL = 1e-4, 1e-4
MAX_CHECK_TOKENS = 128
FALLBACK_PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]


@dataclass(frozen=True)
class MergeCheck:
    max_abs_diff: float
    tolerance: float
    adapter_effect: float  # how far the adapter moves the base's logits, for scale

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def train_quantization(train_dir: Path) -> str:
    """How the base was loaded for training ("none" or "4bit"), from train_config.json."""
    path = train_dir / "train_config.json"
    if not path.is_file():
        return "none"
    return str(json.loads(path.read_text()).get("train", {}).get("quantization") or "none")


def require_full_precision(base_dir: Path) -> None:
    """Refuse a base whose stored weights are themselves quantized (a bitsandbytes/GPTQ export)."""
    config = json.loads((base_dir / "config.json").read_text())
    quant = config.get("quantization_config")
    if quant and quant.get("quant_method") == "gguf":
        raise InvalidInput(
            f"{base_dir / 'config.json'}: the folder was saved from a model loaded from "
            f"{quant.get('gguf_file', 'a GGUF file')} and still names it in quantization_config, so it "
            "cannot be loaded on its own; save it without quantization_config"
        )
    if quant:
        method = quant.get("quant_method", "unknown")
        raise InvalidInput(
            f"{base_dir / 'config.json'}: the base model is stored quantized ({method}); the adapter "
            "must be merged into full-precision weights: point spec.model at the unquantized model"
        )


def max_abs_diff(a: list[Any], b: list[Any]) -> float:
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b, strict=True))


def compare_logits(reference: list[Any], merged: list[Any], base: list[Any]) -> MergeCheck:
    """Largest logit difference between merged and base+adapter, against the tolerance."""
    scale = max(float(r.float().abs().max()) for r in reference)
    return MergeCheck(
        max_abs_diff=max_abs_diff(reference, merged),
        tolerance=ATOL + RTOL * scale,
        adapter_effect=max_abs_diff(reference, base),
    )


def tokenizer_dir(adapter_dir: Path, base_dir: Path) -> Path:
    """The tokenizer the adapter was trained with: saved beside it, else the base's."""
    return adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir


def check_prompts(tokenizer, conversations: list[list[dict[str, str]]]) -> list[str]:
    """The conversations as the model sees them (chat template, generation prompt) for the check."""
    if not conversations:
        return FALLBACK_PROMPTS
    if not tokenizer.chat_template:
        return [" ".join(m["content"] for m in conv) for conv in conversations]
    return [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]


def merge_adapter(
    base_dir: Path, adapter_dir: Path, out_dir: Path, dtype: str, conversations: list[list[dict[str, str]]]
) -> dict[str, Any]:
    """Write the merged model (safetensors + tokenizer) to `out_dir`; return the check's figures.

    `conversations` (chat messages) are the prompts of the logits check.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (adapter_dir / "adapter_config.json").is_file():
        raise MissingInput(f"{adapter_dir}: no adapter_config.json; the train step's adapter is missing")
    require_full_precision(base_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir(adapter_dir, base_dir))
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.eval()
    inputs = [
        tokenizer(p, return_tensors="pt", truncation=True, max_length=MAX_CHECK_TOKENS)
        for p in check_prompts(tokenizer, conversations)
    ]

    def logits(m) -> list[Any]:
        with torch.no_grad():
            return [m(**enc).logits for enc in inputs]

    base = logits(model)
    try:
        peft_model = PeftModel.from_pretrained(model, adapter_dir)
    except (ValueError, KeyError, RuntimeError) as err:
        raise InvalidInput(f"{adapter_dir}: the adapter does not fit the base model {base_dir}: {err}") from None
    peft_model.eval()
    reference = logits(peft_model)
    merged_model = peft_model.merge_and_unload()
    merged = logits(merged_model)
    check = compare_logits(reference, merged, base)
    log.info("merge check: max |logit diff| %.3g (tolerance %.3g), adapter effect %.3g",
             check.max_abs_diff, check.tolerance, check.adapter_effect)
    if not check.ok:
        raise FtError(
            f"merge check failed: merged and base+adapter logits differ by {check.max_abs_diff:.4g} "
            f"(tolerance {check.tolerance:.4g}); the merged model is not written",
            code="MergeCheckFailed",
        )
    merged_model.to(getattr(torch, dtype))
    cast_diff = max_abs_diff(merged, logits(merged_model))
    merged_model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "mergeDtype": dtype,
        "mergeMaxAbsDiff": check.max_abs_diff,
        "mergeTolerance": check.tolerance,
        "adapterMaxAbsEffect": check.adapter_effect,
        "castMaxAbsDiff": cast_diff,
        "mergeCheckPrompts": len(inputs),
    }
