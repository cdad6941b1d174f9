"""Preference tuning with TRL's DPOTrainer on prompt/chosen/rejected rows.

With LoRA the reference model is the base model itself (adapter disabled), so no second copy is
held in memory. Plain-string rows become one-turn conversations, so the model's chat template
frames them exactly as at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common.errors import InvalidData
from jobs.common.modelload import load_causal_lm, load_tokenizer
from jobs.common.spec import TrainStep
from jobs.common.stepctx import StepResult
from jobs.train.adapters import check_target_modules, lora_config
from jobs.train.chat import ensure_chat_template
from jobs.train.data import Split, Splits
from jobs.train.session import Session


@dataclass
class DpoPlan:
    base_dir: Path
    tokenizer: Any
    train: Any  # datasets.Dataset of conversational prompt/chosen/rejected
    val: Any | None


def _turns(value: Any, role: str, field: str, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        if not value.strip():
            raise InvalidData(f"{where}: {field} is empty")
        return [{"role": role, "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return value
    raise InvalidData(f"{where}: {field} must be a string or a list of messages")


def preference_rows(split: Split) -> list[dict[str, Any]]:
    rows = []
    for i, row in enumerate(split.rows):
        where = split.where(i)
        if row["chosen"] == row["rejected"]:
            raise InvalidData(f"{where}: chosen and rejected are the same answer; nothing to prefer")
        rows.append(
            {
                "prompt": _turns(row["prompt"], "user", "prompt", where),
                "chosen": _turns(row["chosen"], "assistant", "chosen", where),
                "rejected": _turns(row["rejected"], "assistant", "rejected", where),
            }
        )
    return rows


def check_lengths(rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> None:
    def length(row: dict[str, Any]) -> int:
        text = tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    shortest = min(length(row) for row in rows)
    if shortest > max_length:
        raise InvalidData(
            f"every training example is longer than steps.train.maxLength ({max_length} tokens; the shortest "
            f"prompt+chosen has {shortest}). Raise maxLength"
        )


def prepare(cfg: TrainStep, splits: Splits, base_dir: Path) -> DpoPlan:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    check_target_modules(cfg.lora, base_dir, AutoModelForCausalLM)
    tokenizer = load_tokenizer(base_dir)
    ensure_chat_template(tokenizer)
    train = preference_rows(splits.train)
    check_lengths(train, tokenizer, cfg.max_length)
    val = Dataset.from_list(preference_rows(splits.val)) if len(splits.val) else None
    return DpoPlan(base_dir, tokenizer, Dataset.from_list(train), val)


def train(session: Session, plan: DpoPlan, classes: tuple[Any, Any] | None = None, counted: str = "pairs") -> StepResult:
    """DPO, or with `classes` (config, trainer) another of TRL's preference trainers, which take
    the same arguments (jobs.train.preference)."""
    if classes is None:
        from trl import DPOConfig, DPOTrainer

        classes = (DPOConfig, DPOTrainer)
    config_class, trainer_class = classes
    cfg = session.cfg
    model, _ = load_causal_lm(plan.base_dir, quantize_4bit=cfg.quantization == "4bit", sharded=session.sharded)
    selection = session.select_best(plan.val is not None)
    args = config_class(**session.trainer_args(**selection), beta=cfg.beta, max_length=cfg.max_length)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=plan.train,
        eval_dataset=plan.val,
        processing_class=plan.tokenizer,
        peft_config=lora_config(cfg.lora, "CAUSAL_LM") if cfg.lora else None,
        callbacks=session.callbacks(selection),
    )
    figures = session.fit(trainer)
    figures.update(session.selection_figures(trainer, selection))
    if plan.val is not None:
        evaluated = trainer.evaluate()  # also logged to metrics.jsonl
        figures["evalLoss"] = round(evaluated["eval_loss"], 4)
        if "eval_rewards/accuracies" in evaluated:
            figures["evalRewardAccuracy"] = round(evaluated["eval_rewards/accuracies"], 4)
    artifact = session.save_weights(trainer, plan.tokenizer)
    resolved = {"beta": cfg.beta, counted: len(plan.train), "maxSteps": trainer.state.max_steps}
    return session.finish(artifact, figures, resolved)
