"""GRPO with TRL's GRPOTrainer: prompts from pack, rewarded by the eval checks.

Each pack row becomes a prompt (the conversation without its last assistant answer) and the
answer becomes the row's `expected`, so a check that compares against the expected answer
(any_of, exact, contains) rewards a completion that says what the data says. Rewards are the
checks of jobs.common.checks (1 when a check passes, else 0), functions named by import path
and an optional format regex, each with its weight; TRL logs each term's mean.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from jobs.common.checks import DEFAULT_CHECKS, label, run_check
from jobs.common.errors import InvalidData, InvalidInput
from jobs.common.modelload import load_causal_lm, load_tokenizer
from jobs.common.spec import Check, FineTuneRunSpec, Grpo, GrpoReward, TrainStep
from jobs.common.stepctx import StepResult
from jobs.common.tracking import plot_reward
from jobs.train.adapters import check_target_modules, lora_config
from jobs.train.chat import ensure_chat_template
from jobs.common.handoff import chat_messages
from jobs.train.data import Split, Splits
from jobs.train.session import Session


class CheckReward:
    """A check as a TRL reward function: 1.0 when the completion passes it, else 0.0."""

    def __init__(self, check: Check, name: str):
        self.check = check
        self.__name__ = name  # TRL logs rewards/<name>/mean

    def __call__(self, prompts: list[Any], completions: list[Any], expected: list[str], **_: Any) -> list[float]:
        return [float(run_check(self.check, completion_text(c), e, {}).passed) for c, e in zip(completions, expected)]


def completion_text(completion: Any) -> str:
    """A completion's text: conversational completions are a list holding the assistant message."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


def import_function(path: str, where: str) -> Callable[..., list[float]]:
    module, _, attr = path.partition(":")
    try:
        function = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise InvalidInput(f"{where}: cannot import {path} ({err})") from None
    if not callable(function):
        raise InvalidInput(f"{where}: {path} is not callable")
    return function


def reward_terms(grpo: Grpo, default_checks: list[Check]) -> tuple[list[Callable[..., Any]], list[float]]:
    """The reward functions and their weights; checks get unique names (their labels)."""
    terms = list(grpo.rewards) or [GrpoReward(check=c) for c in default_checks]
    functions, weights, names = [], [], set()
    for i, term in enumerate(terms):
        if term.function:
            functions.append(import_function(term.function, f"steps.train.grpo.rewards[{i}].function"))
        else:
            name = label(term.check)
            name = name if name not in names else f"{name}#{i}"
            names.add(name)
            functions.append(CheckReward(term.check, name))
        weights.append(term.weight)
    if grpo.format is not None:
        functions.append(CheckReward(Check(type="regex", value=grpo.format.regex, ignore_case=False), "format"))
        weights.append(grpo.format.weight)
    return functions, weights


def default_checks(spec: FineTuneRunSpec) -> list[Check]:
    """The checks the run is judged by: evaluate's, else eval's, else the expected answer.
    Judge checks are left out: no judge model runs during training."""
    for step in (spec.steps.evaluate, spec.steps.eval):
        checks = [c for c in (step.checks if step is not None else []) if c.type != "judge"]
        if checks:
            return checks
    return list(DEFAULT_CHECKS)


def prompt_rows(split: Split) -> list[dict[str, Any]]:
    rows = []
    for i, row in enumerate(split.rows):
        messages = chat_messages(row, split.where(i))
        if messages[-1]["role"] != "assistant":
            raise InvalidData(f"{split.where(i)}: the last message must be the assistant's answer (the expected one)")
        rows.append({"prompt": messages[:-1], "expected": messages[-1]["content"]})
    return rows


def check_prompt_lengths(rows: list[dict[str, Any]], split: Split, tokenizer: Any, cfg: TrainStep, grpo: Grpo) -> None:
    """A prompt plus maxCompletionLength must fit maxLength (TRL does not truncate prompts)."""
    room = cfg.max_length - grpo.max_completion_length
    if room <= 0:
        raise InvalidInput(
            f"steps.train.grpo.maxCompletionLength ({grpo.max_completion_length}) leaves no room for a prompt "
            f"in steps.train.maxLength ({cfg.max_length})"
        )
    for i, row in enumerate(rows):
        text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if n > room:
            raise InvalidData(
                f"{split.where(i)}: the prompt has {n} tokens, more than steps.train.maxLength - "
                f"grpo.maxCompletionLength ({room}); shorten it or raise maxLength"
            )


@dataclass
class GrpoPlan:
    base_dir: Path
    tokenizer: Any
    grpo: Grpo
    train: Any  # datasets.Dataset of conversational prompt + expected


def prepare(cfg: TrainStep, splits: Splits, base_dir: Path) -> GrpoPlan:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    grpo = cfg.grpo or Grpo()
    for i, term in enumerate(grpo.rewards):  # a bad import path fails before any weights load
        if term.function:
            import_function(term.function, f"steps.train.grpo.rewards[{i}].function")
    check_target_modules(cfg.lora, base_dir, AutoModelForCausalLM)
    tokenizer = load_tokenizer(base_dir)
    ensure_chat_template(tokenizer)
    rows = prompt_rows(splits.train)
    check_prompt_lengths(rows, splits.train, tokenizer, cfg, grpo)
    return GrpoPlan(base_dir, tokenizer, grpo, Dataset.from_list(rows))


def train(session: Session, plan: GrpoPlan) -> StepResult:
    from trl import GRPOConfig, GRPOTrainer

    cfg, grpo = session.cfg, plan.grpo
    functions, weights = reward_terms(grpo, default_checks(session.ctx.spec))
    model, _ = load_causal_lm(plan.base_dir, quantize_4bit=cfg.quantization == "4bit", sharded=session.sharded)
    args = GRPOConfig(
        **session.trainer_args(),
        num_generations=grpo.num_generations,
        max_completion_length=grpo.max_completion_length,
        temperature=grpo.temperature,
        top_p=grpo.top_p,
        beta=grpo.kl_beta,
        reward_weights=weights,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=functions,
        args=args,
        train_dataset=plan.train,
        processing_class=plan.tokenizer,
        peft_config=lora_config(cfg.lora, "CAUSAL_LM") if cfg.lora else None,
        callbacks=session.callbacks(),
    )
    figures = session.fit(trainer)
    rewards = [r for _, r in session.metrics.series("reward")]
    figures.update(
        firstReward=round(rewards[0], 4) if rewards else None,
        lastReward=round(rewards[-1], 4) if rewards else None,
    )
    artifact = session.save_weights(trainer, plan.tokenizer)
    names = trainer.reward_func_names
    plot_reward(session.metrics, session.ctx.out / "reward.png", f"{session.ctx.name}: GRPO reward", names)
    resolved = {"prompts": len(plan.train), "rewards": dict(zip(names, weights)), "maxSteps": trainer.state.max_steps}
    result = session.finish(artifact, figures, resolved)
    result.outputs["rewardPlot"] = "reward.png"
    return result
