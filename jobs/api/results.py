"""A succeeded job's result file: the train step's metrics.jsonl as OpenAI's step_metrics.csv
(step, train_loss, train_accuracy, valid_loss, valid_mean_token_accuracy; empty where not measured)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

COLUMNS = {  # OpenAI's column -> the train step's metrics.jsonl key
    "train_loss": "loss",
    "train_accuracy": "mean_token_accuracy",
    "valid_loss": "eval_loss",
    "valid_mean_token_accuracy": "eval_mean_token_accuracy",
}


def step_metrics_csv(metrics_jsonl: bytes) -> bytes:
    """One row per step; a step's training and evaluation records are merged."""
    steps: dict[int, dict[str, Any]] = {}
    for line in metrics_jsonl.decode().splitlines():
        if line.strip():
            record = json.loads(line)
            row = steps.setdefault(int(record["step"]), {})
            row.update({col: record[key] for col, key in COLUMNS.items() if record.get(key) is not None})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["step", *COLUMNS], lineterminator="\n")
    writer.writeheader()
    for step in sorted(steps):
        writer.writerow({"step": step, **steps[step]})
    return out.getvalue().encode()
