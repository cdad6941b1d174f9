"""The train step: cheap checks first, then the method (sft, dpo, classification).

Order matters for the user: options this machine cannot run, a missing or too-small training
set, a distributed run whose ranks cannot reach each other (jobs.train.preflight), unknown target
modules and over-long examples all fail before any weights are loaded.

With steps.train.distributed over one process, `python -m jobs.train` is the launcher
(jobs.train.launch) and each worker it starts is `python -m jobs.train` again.
"""

from __future__ import annotations

import importlib
import importlib.util

from jobs.common import ranks
from jobs.common.errors import InvalidInput
from jobs.common.modelload import base_model_dir, has_gpu
from jobs.common.spec import TrainStep
from jobs.common.stepctx import StepContext, StepResult, execute, guarded, load_spec
from jobs.train import tokenize_once
from jobs.train.data import read_splits, require_batch
from jobs.train.preflight import join_and_check
from jobs.train.session import Session

METHODS = {
    "sft": "jobs.train.sft",
    "dpo": "jobs.train.dpo",
    "classification": "jobs.train.classify",
    "grpo": "jobs.train.grpo",
    "kto": "jobs.train.preference",
    "orpo": "jobs.train.preference",
}


def check_hardware(cfg: TrainStep) -> None:
    """Options that need hardware or packages this machine lacks."""
    dist = cfg.distributed
    if dist.nodes * dist.procs_per_node > 1 and dist.strategy != "ddp" and not has_gpu():
        raise InvalidInput(
            f"steps.train.distributed.strategy: {dist.strategy} shards the model through accelerate, which shards "
            "only across GPUs (CPU workers train as DDP replicas); use strategy: ddp on CPU, or give the step GPUs"
        )
    if dist.strategy == "zero3" and importlib.util.find_spec("deepspeed") is None:
        raise InvalidInput("steps.train.distributed.strategy: zero3 needs the deepspeed package in the train image")
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
    check_hardware(cfg)
    if ranks.world_size() > 1:
        seconds = join_and_check()
        ctx.progress.event("pre-flight passed", worldSize=ranks.world_size(), seconds=round(seconds, 3))
        tokenize_once.share_through(ctx)
    splits = read_splits(ctx.input_dir("pack"), cfg.method)
    require_batch(splits.train, cfg.batch_size)
    method = importlib.import_module(METHODS[cfg.method])
    plan = method.prepare(cfg, splits, base_model_dir(ctx))
    session = Session.open(ctx)
    try:
        return method.train(session, plan)
    finally:
        session.tracker.finish()


def start() -> int:
    """The launcher of a distributed step, or the training process itself."""
    train = load_spec().spec.steps.train
    dist = train.distributed if train else None
    if dist and dist.nodes * dist.procs_per_node > 1 and not ranks.is_worker():
        from jobs.train.launch import launch

        check_hardware(train)  # before any worker starts
        return launch(dist)
    execute("train", run_step)
    return 0


def main() -> None:
    guarded("train", start)
