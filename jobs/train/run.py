"""The train step: cheap checks first, then the method (sft, dpo, classification).

Order matters for the user: options this machine cannot run, a missing or too-small training
set, unknown target modules and over-long examples all fail before any weights are loaded.
"""

from __future__ import annotations

import importlib
import importlib.util

from jobs.common.errors import InvalidInput
from jobs.common.modelload import base_model_dir, has_gpu
from jobs.common.spec import TrainStep
from jobs.common.stepctx import StepContext, StepResult
from jobs.train.data import read_splits, require_batch
from jobs.train.session import Session

METHODS = {
    "sft": "jobs.train.sft",
    "dpo": "jobs.train.dpo",
    "classification": "jobs.train.classify",
    "grpo": "jobs.train.grpo",
    "kto": "jobs.train.preference",
    "orpo": "jobs.train.preference",
}


def preflight(cfg: TrainStep) -> None:
    """Options that need hardware or packages this machine lacks."""
    if cfg.quantization != "4bit":
        return
    if cfg.lora is None:
        raise InvalidInput("steps.train.quantization: 4bit (QLoRA) trains LoRA adapters; set steps.train.lora")
    if not has_gpu():
        raise InvalidInput(
            "steps.train.quantization: 4bit (QLoRA via bitsandbytes) needs a CUDA GPU and none is visible "
            "here; use quantization: none on CPU, or give the step a GPU (resources.train nvidia.com/gpu)"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise InvalidInput("steps.train.quantization: 4bit needs the bitsandbytes package in the train image")


def run_step(ctx: StepContext) -> StepResult:
    cfg: TrainStep = ctx.config
    preflight(cfg)
    splits = read_splits(ctx.input_dir("pack"), cfg.method)
    require_batch(splits.train, cfg.batch_size)
    method = importlib.import_module(METHODS[cfg.method])
    plan = method.prepare(cfg, splits, base_model_dir(ctx))
    session = Session.open(ctx)
    try:
        return method.train(session, plan)
    finally:
        session.tracker.finish()
