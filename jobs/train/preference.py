"""KTO and ORPO from TRL, validated and reported as DPO is (jobs.train.dpo).

ORPO trains on preference pairs (prompt/chosen/rejected) and needs no reference model. KTO
learns from completions labelled desirable or not: rows with prompt/completion/label, or
preference pairs, which TRL splits into one desirable and one undesirable completion each.
With LoRA, KTO's reference model is the base model (adapter disabled), as in DPO.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.common.errors import InvalidData
from jobs.common.modelload import load_tokenizer
from jobs.common.spec import TrainStep
from jobs.common.stepctx import StepResult
from jobs.train.adapters import check_target_modules
from jobs.train.chat import ensure_chat_template
from jobs.train.data import Split, Splits
from jobs.train import dpo
from jobs.train.dpo import DpoPlan, _turns, check_lengths, preference_rows
from jobs.train.session import Session


def labelled_rows(split: Split) -> list[dict[str, Any]]:
    """KTO rows: pairs as they are, labelled completions as conversations with a boolean label."""
    if all("chosen" in row for row in split.rows):
        return preference_rows(split)
    rows = []
    for i, row in enumerate(split.rows):
        where = split.where(i)
        missing = [k for k in ("prompt", "completion", "label") if k not in row]
        if missing:
            raise InvalidData(f"{where}: a KTO row needs prompt, completion and label (or chosen/rejected); missing {', '.join(missing)}")
        if not isinstance(row["label"], bool):
            raise InvalidData(f"{where}: label must be true (a desirable completion) or false, not {row['label']!r}")
        rows.append(
            {
                "prompt": _turns(row["prompt"], "user", "prompt", where),
                "completion": _turns(row["completion"], "assistant", "completion", where),
                "label": row["label"],
            }
        )
    if len({r["label"] for r in rows}) < 2:
        raise InvalidData(f"pack/{split.name}.jsonl: KTO needs both desirable (label: true) and undesirable completions")
    return rows


def prepare(cfg: TrainStep, splits: Splits, base_dir: Path) -> DpoPlan:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    rows_of = labelled_rows if cfg.method == "kto" else preference_rows
    check_target_modules(cfg.lora, base_dir, AutoModelForCausalLM)
    tokenizer = load_tokenizer(base_dir)
    ensure_chat_template(tokenizer)
    train = rows_of(splits.train)
    check_lengths([{"prompt": r["prompt"], "chosen": r.get("chosen", r.get("completion"))} for r in train], tokenizer, cfg.max_length)
    val = Dataset.from_list(rows_of(splits.val)) if len(splits.val) else None
    return DpoPlan(base_dir, tokenizer, Dataset.from_list(train), val)


def trainer_classes(method: str) -> tuple[Any, Any]:
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOConfig, ORPOTrainer


def train(session: Session, plan: DpoPlan) -> StepResult:
    return dpo.train(session, plan, trainer_classes(session.cfg.method), counted="examples")
