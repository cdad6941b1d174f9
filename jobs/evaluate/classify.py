"""Classification runs: the base model's head against the trained classifier on the test split.

The train step leaves adapter/ (LoRA plus the trained head) or model/, and
labels.json ({"labels": [...], "label2id": {...}}). The base side is the base
model with a fresh, seeded head of the same labels (with an adapter: the same
loaded model with the adapter switched off), i.e. what the run started from.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from jobs.common.errors import MissingInput
from jobs.common.handoff import train_output
from jobs.common.stepctx import StepContext
from jobs.evaluate.metrics import classification_metrics
from jobs.common.testset import Example

BATCH = 16
SEED = 42


def read_labels(ctx: StepContext) -> list[str]:
    path = ctx.input_dir("train", only="labels.json") / "labels.json"
    if not path.is_file():
        raise MissingInput("the train step's output has no labels.json; a classification run needs it")
    return list(json.loads(path.read_text())["labels"])


def _head_model(model_dir: Path, labels: list[str], tokenizer: Any) -> Any:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(SEED)  # the fresh head is the same on every run
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def predict(model: Any, tokenizer: Any, texts: list[str], gold: list[int | None], switch: Any) -> list[tuple[int, float | None]]:
    """(predicted label id, cross-entropy of the gold label or None) per text."""
    import torch
    import torch.nn.functional as F

    out: list[tuple[int, float | None]] = []
    model.eval()
    limit = min(getattr(model.config, "max_position_embeddings", 512) or 512, 512)
    with switch(), torch.inference_mode():
        for start in range(0, len(texts), BATCH):
            enc = tokenizer(texts[start : start + BATCH], truncation=True, max_length=limit, padding=True, return_tensors="pt")
            logits = model(**{k: v.to(model.device) for k, v in enc.items()}).logits.float()
            nll = -F.log_softmax(logits, dim=-1)
            for row, label in enumerate(gold[start : start + BATCH]):
                out.append((int(logits[row].argmax()), float(nll[row, label]) if label is not None else None))
    return out


def _side(predictions: list[tuple[int, float | None]], examples: list[Example], labels: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows = []
    for (pred, nll), example in zip(predictions, examples):
        answer = labels[pred]
        rows.append({"answer": answer, "passed": answer == example.expected, "correct": answer == example.expected, "nll": nll, "checks": []})
    losses = [r["nll"] for r in rows if r["nll"] is not None]
    metrics = classification_metrics([e.expected for e in examples], [r["answer"] for r in rows], labels)
    metrics.update(passRate=metrics["accuracy"], loss=round(sum(losses) / len(losses), 4) if losses else None)
    return metrics, rows


def classification(ctx: StepContext, examples: list[Example]) -> dict[str, Any]:
    from jobs.common.modelload import base_model_dir, load_tokenizer

    kind, folder = train_output(ctx)
    labels = read_labels(ctx)
    model_dir = base_model_dir(ctx)
    tokenizer = load_tokenizer(folder if (folder / "tokenizer_config.json").is_file() else model_dir)
    texts = [e.text for e in examples]
    ids = {label: i for i, label in enumerate(labels)}
    gold = [ids.get(e.expected) for e in examples]
    if kind == "adapter":
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(_head_model(model_dir, labels, tokenizer), folder)
        base, base_switch = tuned, tuned.disable_adapter
    else:
        from transformers import AutoModelForSequenceClassification

        tuned = AutoModelForSequenceClassification.from_pretrained(folder)
        base, base_switch = _head_model(model_dir, labels, tokenizer), contextlib.nullcontext
    base_metrics, base_rows = _side(predict(base, tokenizer, texts, gold, base_switch), examples, labels)
    ctx.progress.update(len(examples), 2 * len(examples))
    tuned_metrics, tuned_rows = _side(predict(tuned, tokenizer, texts, gold, contextlib.nullcontext), examples, labels)
    ctx.progress.update(2 * len(examples), 2 * len(examples))
    return {
        "kind": kind,
        "labels": labels,
        "base": base_metrics,
        "tuned": tuned_metrics,
        "rows": [{"base": b, "tuned": t} for b, t in zip(base_rows, tuned_rows)],
    }
