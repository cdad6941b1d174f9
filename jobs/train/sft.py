"""Supervised fine-tuning with TRL's SFTTrainer, LoRA (or QLoRA, or a full fine-tune) via peft.

Rows are tokenized here, with the assistant-only mask from jobs.train.chat, and handed to TRL
pre-tokenized; TRL builds the labels, truncates to maxLength and, with packing on, packs whole
examples into maxLength-token rows (best-fit decreasing), trained as rows of a batch with
position ids restarting at each example so that examples do not attend to each other
(jobs.train.packed_rows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common.errors import InvalidData
from jobs.common.modelload import load_causal_lm, load_tokenizer
from jobs.common.spec import TrainStep
from jobs.common.stepctx import StepResult
from jobs.train.adapters import check_target_modules, lora_config
from jobs.train.chat import ToolsNotRendered, chat_encoder, ensure_chat_template
from jobs.common.handoff import chat_messages, chat_tools
from jobs.train.data import Split, Splits
from jobs.train.packed_rows import train_packed_rows
from jobs.train import tokenize_once
from jobs.train.session import Session

log = logging.getLogger(__name__)


@dataclass
class SftPlan:
    base_dir: Path
    tokenizer: Any
    train: Any  # datasets.Dataset of input_ids, assistant_masks
    val: Any | None
    longest: int


def tokenize(split: Split, tokenizer: Any, assistant_only: bool) -> Any:
    from datasets import Dataset

    encode = chat_encoder(tokenizer, assistant_only)
    rows = []
    for i, row in enumerate(split.rows):
        where = split.where(i)
        try:
            encoded = encode(chat_messages(row, where), chat_tools(row, where))
        except ToolsNotRendered as err:
            raise InvalidData(f"{where}: {err}") from None
        if 1 not in encoded["assistant_masks"]:
            raise InvalidData(f"{split.where(i)}: the assistant messages are empty, nothing to learn")
        rows.append(encoded)
    return Dataset.from_list(rows)


def check_lengths(dataset: Any, max_length: int) -> int:
    """Fail when no example fits in maxLength; warn about the ones that will be cut."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    too_long = sum(n > max_length for n in lengths)
    if too_long == len(lengths):
        raise InvalidData(
            f"every training example is longer than steps.train.maxLength ({max_length} tokens; the shortest "
            f"has {min(lengths)}): training would see only cut-off prompts. Raise maxLength"
        )
    if too_long:
        log.warning(
            "%d of %d training examples are longer than maxLength=%d and are cut", too_long, len(lengths), max_length
        )
    return max(lengths)


def prepare(cfg: TrainStep, splits: Splits, base_dir: Path) -> SftPlan:
    from transformers import AutoModelForCausalLM

    check_target_modules(cfg.lora, base_dir, AutoModelForCausalLM)
    tokenizer = load_tokenizer(base_dir)
    ensure_chat_template(tokenizer)
    # in a distributed step rank 0 tokenizes and the others read its rows (jobs.train.tokenize_once)
    train = tokenize_once.once("train", lambda: tokenize(splits.train, tokenizer, cfg.assistant_only_loss))
    longest = check_lengths(train, cfg.max_length)
    val = None
    if len(splits.val):
        val = tokenize_once.once("val", lambda: tokenize(splits.val, tokenizer, cfg.assistant_only_loss))
    return SftPlan(base_dir, tokenizer, train, val, longest)


def train(session: Session, plan: SftPlan) -> StepResult:
    from trl import SFTConfig, SFTTrainer

    cfg = session.cfg
    model, _ = load_causal_lm(plan.base_dir, quantize_4bit=cfg.quantization == "4bit", sharded=session.sharded)
    if cfg.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    selection = session.select_best(plan.val is not None)
    args = SFTConfig(
        **session.trainer_args(**selection),
        max_length=cfg.max_length,
        packing=cfg.packing,
        packing_strategy="bfd",
        # The labels are built from our assistant mask; TRL's own template masking is not needed.
        assistant_only_loss=False,
        completion_only_loss=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=plan.train,
        eval_dataset=plan.val,
        processing_class=plan.tokenizer,
        peft_config=lora_config(cfg.lora, "CAUSAL_LM") if cfg.lora else None,
        callbacks=session.callbacks(selection),
    )
    if cfg.packing:
        train_packed_rows(trainer)
    figures = session.fit(trainer)
    figures.update(session.selection_figures(trainer, selection))
    if plan.val is not None:  # the best model's, when it was selected
        figures["evalLoss"] = round(trainer.evaluate()["eval_loss"], 4)  # also logged to metrics.jsonl
    artifact = session.save_weights(trainer, plan.tokenizer)
    resolved = {
        "packing": cfg.packing,
        "examples": len(plan.train),
        "longestExample": plan.longest,
        "maxSteps": trainer.state.max_steps,
        "effectiveBatch": cfg.batch_size * cfg.gradient_accumulation,
    }
    return session.finish(artifact, figures, resolved)
