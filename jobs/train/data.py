"""The pack step's splits as rows for training, checked before any model is loaded.

Row shapes (the pack output contract): openai_chat {"messages": [...]}, alpaca
{"instruction", "input", "output"}, classification {"text", "label"}, dpo
{"prompt", "chosen", "rejected"}; every row also has "id".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.common.errors import InvalidData

REQUIRED = {
    "sft": (),  # messages, or instruction/output: checked by chat_messages
    "dpo": ("prompt", "chosen", "rejected"),
    "classification": ("text", "label"),
    "grpo": (),  # as sft: the last assistant message is the expected answer
    "kto": ("prompt",),  # and completion/label, or chosen/rejected: checked by jobs.train.preference
    "orpo": ("prompt", "chosen", "rejected"),
}


@dataclass
class Split:
    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def where(self, index: int) -> str:
        return f"pack/{self.name}.jsonl line {self.lines[index]}"

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split


def read_split(pack_dir: Path, name: str, required: tuple[str, ...]) -> Split:
    split = Split(name)
    path = pack_dir / f"{name}.jsonl"
    if not path.exists():
        if name == "train":
            raise InvalidData("pack/train.jsonl is missing from the pack step's output")
        return split
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidData(f"pack/{name}.jsonl line {number}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise InvalidData(f"pack/{name}.jsonl line {number}: expected a JSON object")
        missing = [k for k in required if k not in row]
        if missing:
            raise InvalidData(f"pack/{name}.jsonl line {number}: missing field(s) {', '.join(missing)}")
        split.rows.append(row)
        split.lines.append(number)
    return split


def read_splits(pack_dir: Path, method: str) -> Splits:
    required = REQUIRED[method]
    return Splits(*(read_split(pack_dir, name, required) for name in ("train", "val", "test")))


def require_batch(train: Split, batch_size: int) -> None:
    """At least one full batch of training examples."""
    if not train.rows:
        raise InvalidData("pack/train.jsonl is empty: there is nothing to train on")
    if len(train) < batch_size:
        raise InvalidData(
            f"pack/train.jsonl has {len(train)} example(s), fewer than one batch "
            f"(steps.train.batchSize = {batch_size}); add data or lower batchSize"
        )
