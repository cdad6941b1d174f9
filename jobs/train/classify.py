"""Sequence classification: a classification head on the base model, trained with LoRA (the head
itself fully) or, with `lora: null`, as a full fine-tune for small encoders.

Labels are the distinct labels of pack's train split; val/test labels must all occur in train.
The model is evaluated on val every epoch (or every `evalEvery` steps); a checkpoint is saved at
each new best F1 macro (these are the step's checkpoints, instead of every `checkpointEvery`
steps), the best is restored at the end, and training stops after `earlyStoppingPatience`
evaluations without improvement. Final metrics on val and test: accuracy, F1 macro/micro/weighted, precision and
recall (macro), a per-label report and the confusion matrix.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common.errors import InvalidData
from jobs.common.spec import TrainStep
from jobs.common.stepctx import StepResult
from jobs.train.adapters import check_target_modules, lora_config
from jobs.train.data import Split, Splits
from jobs.train.session import Session

log = logging.getLogger(__name__)
SELECT_ON = "f1_macro"
SCORE_NAMES = ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro")


@dataclass
class ClassifyPlan:
    base_dir: Path
    tokenizer: Any
    labels: list[str]
    max_length: int
    train: Any  # datasets.Dataset of input_ids, attention_mask, label
    val: Any | None
    test: Any | None


def label_set(splits: Splits) -> list[str]:
    """The train labels; a val/test label never seen in train is an error naming its line."""
    labels = sorted({str(row["label"]) for row in splits.train.rows})
    if len(labels) < 2:
        raise InvalidData(f"pack/train.jsonl has {len(labels)} distinct label(s); classification needs at least 2")
    for split in (splits.val, splits.test):
        for i, row in enumerate(split.rows):
            if str(row["label"]) not in labels:
                raise InvalidData(
                    f"{split.where(i)}: label {row['label']!r} never occurs in pack/train.jsonl "
                    f"(train labels: {', '.join(labels)}); the model cannot learn it"
                )
    return labels


def scores(y_true: list[int], y_pred: list[int]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "f1_macro": f1_score(y_true, y_pred, average="macro", zero_division=0),
        "f1_micro": f1_score(y_true, y_pred, average="micro", zero_division=0),
        "f1_weighted": f1_score(y_true, y_pred, average="weighted", zero_division=0),
        "precision_macro": precision_score(y_true, y_pred, average="macro", zero_division=0),
        "recall_macro": recall_score(y_true, y_pred, average="macro", zero_division=0),
    }


def report(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict[str, Any]:
    """Scores, the per-label report and the confusion matrix (rows: true label, columns: predicted)."""
    from sklearn.metrics import classification_report, confusion_matrix

    ids = list(range(len(labels)))
    return {
        **scores(y_true, y_pred),
        "perLabel": classification_report(
            y_true, y_pred, labels=ids, target_names=labels, output_dict=True, zero_division=0
        ),
        "confusionMatrix": {"labels": labels, "matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist()},
    }


def _encode(split: Split, tokenizer: Any, label_ids: dict[str, int], max_length: int) -> Any:
    from datasets import Dataset

    texts = [str(row["text"]) for row in split.rows]
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    return Dataset.from_dict({**encoded, "label": [label_ids[str(row["label"])] for row in split.rows]})


def prepare(cfg: TrainStep, splits: Splits, base_dir: Path) -> ClassifyPlan:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from jobs.common.modelload import load_tokenizer

    labels = label_set(splits)
    check_target_modules(cfg.lora, base_dir, AutoModelForSequenceClassification)
    tokenizer = load_tokenizer(base_dir)
    positions = getattr(AutoConfig.from_pretrained(base_dir), "max_position_embeddings", None) or cfg.max_length
    max_length = min(cfg.max_length, positions)
    if max_length < cfg.max_length:
        log.info("maxLength %d exceeds the model's %d positions; using %d", cfg.max_length, positions, max_length)
    lengths = [len(ids) for ids in tokenizer([str(r["text"]) for r in splits.train.rows])["input_ids"]]
    if min(lengths) > max_length:
        raise InvalidData(
            f"every training text is longer than maxLength ({max_length} tokens; the shortest has "
            f"{min(lengths)}): the classifier would only see their beginnings. Raise steps.train.maxLength"
        )
    label_ids = {label: i for i, label in enumerate(labels)}
    train, val, test = (
        _encode(split, tokenizer, label_ids, max_length) if len(split) else None
        for split in (splits.train, splits.val, splits.test)
    )
    return ClassifyPlan(base_dir, tokenizer, labels, max_length, train, val, test)


def _selection_args(cfg: TrainStep, n_train: int, has_val: bool) -> dict[str, Any]:
    """Evaluate every epoch (or evalEvery steps); checkpoints on evaluation steps, keep the best."""
    if not has_val:
        log.warning("pack/val.jsonl is empty: no model selection or early stopping, the last model is kept")
        return {}
    per_epoch = math.ceil(math.ceil(n_train / cfg.batch_size) / cfg.gradient_accumulation)
    return {
        "eval_strategy": "steps",
        "eval_steps": cfg.eval_every or per_epoch,
        # a checkpoint at each new best F1 macro: the one restored at the end, and where a
        # restarted step resumes
        "save_strategy": "best",
        "load_best_model_at_end": True,
        "metric_for_best_model": SELECT_ON,
        "greater_is_better": True,
    }


def train(session: Session, plan: ClassifyPlan) -> StepResult:
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
        TrainingArguments,
    )

    cfg = session.cfg
    model = AutoModelForSequenceClassification.from_pretrained(
        plan.base_dir,
        num_labels=len(plan.labels),
        id2label=dict(enumerate(plan.labels)),
        label2id={label: i for i, label in enumerate(plan.labels)},
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = plan.tokenizer.pad_token_id
    if cfg.lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg.lora, "SEQ_CLS"))
    selection = _selection_args(cfg, len(plan.train), plan.val is not None)
    callbacks = session.callbacks()
    if selection and cfg.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))

    def compute_metrics(prediction: Any) -> dict[str, float]:
        return scores(prediction.label_ids.tolist(), np.argmax(prediction.predictions, axis=-1).tolist())

    trainer = Trainer(
        model=model,
        args=TrainingArguments(**session.trainer_args(**selection)),
        train_dataset=plan.train,
        eval_dataset=plan.val,
        processing_class=plan.tokenizer,
        data_collator=DataCollatorWithPadding(plan.tokenizer),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    figures = session.fit(trainer)
    reports, final = {}, {}
    for name, dataset in (("val", plan.val), ("test", plan.test)):
        if dataset is not None:
            predicted = trainer.predict(dataset)
            y_true = predicted.label_ids.tolist()
            reports[name] = report(y_true, np.argmax(predicted.predictions, axis=-1).tolist(), plan.labels)
            final.update({f"{name}{_camel(k)}": round(reports[name][k], 4) for k in SCORE_NAMES})
    session.metrics.write({"step": trainer.state.global_step, **final})
    figures.update(final)
    out = session.ctx.out
    artifact = session.save_weights(trainer, plan.tokenizer)
    label2id = {label: i for i, label in enumerate(plan.labels)}
    (out / "labels.json").write_text(json.dumps({"labels": plan.labels, "label2id": label2id}, indent=2))
    (out / "classification_report.json").write_text(json.dumps(reports, indent=2))
    figures["bestCheckpoint"] = trainer.state.best_model_checkpoint and Path(trainer.state.best_model_checkpoint).name
    resolved = {"labels": plan.labels, "maxLength": plan.max_length, "selectOn": SELECT_ON, **selection}
    return session.finish(artifact, figures, resolved)


def _camel(key: str) -> str:
    return "".join(part.capitalize() for part in key.split("_"))
