"""LoRA settings from the spec, and the check that the target modules exist in the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.common.errors import InvalidInput
from jobs.common.spec import Lora


def linear_module_names(model: Any) -> list[str]:
    """Short names of the model's linear layers (what LoRA can adapt), output head excluded."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not head and name
        }
    )


def check_target_modules(lora: Lora | None, base_dir: Path, auto_class: Any) -> None:
    """Fail fast on a target module the model does not have; the model is built without weights."""
    if lora is None or lora.target_modules == "all-linear":
        return
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    with init_empty_weights():
        model = auto_class.from_config(AutoConfig.from_pretrained(base_dir))
    valid = linear_module_names(model)
    unknown = [t for t in lora.target_modules if t not in valid]
    if unknown:
        raise InvalidInput(
            f"steps.train.lora.targetModules: {', '.join(map(repr, unknown))} not in this model; "
            f"its linear modules are: {', '.join(valid)} (or use all-linear)"
        )


def lora_config(lora: Lora, task_type: str) -> Any:
    from peft import LoraConfig

    targets = lora.target_modules if lora.target_modules == "all-linear" else list(lora.target_modules)
    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type=task_type
    )
