"""What every training method shares: checkpoints and resume, preemption, metrics and tracking,
the Trainer arguments that come from the spec (distribution included), and writing the step's
outputs.

In a distributed step every worker has a Session; only rank 0's writes anything to the store."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from jobs.common import keys, ranks, runname
from jobs.common.cachekey import step_key
from jobs.common.errors import Preempted
from jobs.common.modelload import bf16_supported, has_gpu
from jobs.common.spec import TrainStep
from jobs.common.stepctx import StepContext, StepResult
from jobs.common.tracking import MetricsLog, Tracker, open_tracker, plot_loss
from jobs.common.training_report import FILE as TRAINING_REPORT, LOSS_PLOT, hardware
from jobs.train.callbacks import ProgressCallback
from jobs.train.checkpoints import (
    KEEP,
    METRICS_COPY,
    CheckpointCallback,
    CheckpointStore,
    checkpoint_step,
)
from jobs.train import tokenize_once
from jobs.train.preemption import Preemption
from jobs.train.report import write_training_report


def peak_rss_per_rank() -> list[float]:
    """Each worker's peak resident memory in MiB, rank 0 first (every rank takes part)."""
    import resource

    mine = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
    if ranks.world_size() == 1:
        return [mine]
    import torch.distributed as dist

    everyone: list[Any] = [None] * ranks.world_size()
    dist.all_gather_object(everyone, mine)
    return everyone


@dataclass
class Session:
    ctx: StepContext
    cfg: TrainStep
    work: Path  # the Trainer's output_dir, where it writes local checkpoints
    resume_from: Path | None
    checkpoints: CheckpointStore
    tracker: Tracker
    metrics: MetricsLog
    preemption: Preemption

    @classmethod
    def open(cls, ctx: StepContext) -> Session:
        """Restore the newest good checkpoint (if any) and the metrics logged up to it."""
        cfg: TrainStep = ctx.config
        input_key = step_key(ctx.spec, "train", ctx.input_manifests, ctx.base_dir)
        work = ctx.scratch / "trainer"
        checkpoints = CheckpointStore(
            ctx.store, keys.step_prefix(ctx.namespace, ctx.name, "train"), input_key, ctx.progress
        )
        resume_from = checkpoints.restore(work)
        metrics_path = ctx.out / "metrics.jsonl"
        metrics_path.unlink(missing_ok=True)
        if resume_from is not None and (resume_from / METRICS_COPY).exists():
            shutil.copyfile(resume_from / METRICS_COPY, metrics_path)
        wandb = ctx.spec.tracking.wandb
        tracker = open_tracker(
            wandb if ranks.is_main() else None,
            run_id=f"{ctx.namespace}-{ctx.name}-{input_key[:8]}",
            name=runname.expand(wandb.run_name, ctx.run) if wandb and wandb.run_name else ctx.name,
            config=cfg.model_dump(mode="json", by_alias=True),
            work_dir=ctx.out / "wandb",  # offline runs travel with the outputs (wandb sync)
        )
        metrics = MetricsLog(metrics_path, tracker)
        if resume_from is not None:
            metrics.truncate(checkpoint_step(resume_from))
            # every progress line of this attempt says where it took over (the run's status shows it)
            ctx.progress.carry = {
                "resumedFrom": checkpoint_step(resume_from),
                "preemptedAt": (checkpoints.restored or {}).get("preemptedAt"),
            }
        preemption = Preemption().install()
        return cls(ctx, cfg, work, resume_from, checkpoints, tracker, metrics, preemption)

    @property
    def sharded(self) -> bool:
        """FSDP shards the model over the workers (loaded without a device map)."""
        return ranks.world_size() > 1 and self.cfg.distributed.strategy == "fsdp"

    def trainer_args(self, **overrides: Any) -> dict[str, Any]:
        """TrainingArguments keywords from the spec (TRL's configs take the same ones)."""
        cfg, gpu = self.cfg, has_gpu()
        args = dict(
            output_dir=str(self.work),
            learning_rate=cfg.learning_rate,
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps or -1,
            per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation,
            # an int is exact steps; a float in [0, 1) is a ratio of the total steps
            warmup_steps=cfg.warmup_steps if cfg.warmup_steps is not None else cfg.warmup_ratio,
            lr_scheduler_type=cfg.lr_scheduler,
            weight_decay=cfg.weight_decay,
            seed=cfg.seed,
            data_seed=cfg.seed,
            logging_steps=1,
            save_strategy="steps",
            save_steps=cfg.checkpoint_every,
            save_total_limit=KEEP,
            restore_callback_states_from_checkpoint=True,
            report_to="none",
            disable_tqdm=True,
            use_cpu=not gpu,
            # bfloat16 autocast where the hardware has it (1.5x faster than float32 on an
            # AVX512-BF16 CPU); activation checkpointing only on a GPU, where memory is the limit.
            bf16=bf16_supported(),
            activation_checkpointing=gpu,
            include_num_input_tokens_seen="non_padding",
            dataloader_num_workers=0,
        )
        if cfg.eval_every:
            args.update(eval_strategy="steps", eval_steps=cfg.eval_every)
        if ranks.world_size() > 1:
            args.update(self._distributed_args(gpu))
        args.update(overrides)
        return args

    def _distributed_args(self, gpu: bool) -> dict[str, Any]:
        """DDP is what the Trainer does under torchrun; fsdp shards with FSDP2 (accelerate's plugin).

        FSDP checkpoints are consolidated (FULL_STATE_DICT): rank 0 gathers the model and the
        optimizer and writes one checkpoint folder like a single process's (plus
        `optimizer.bin`), which is what goes to the store and what every rank resumes from.
        """
        strategy = self.cfg.distributed.strategy
        if strategy == "ddp":
            # LoRA's frozen weights need no gradient, and every trainable one gets one each step
            return {"ddp_find_unused_parameters": False}
        if strategy == "fsdp":
            return {
                "fsdp": True,
                "fsdp_config": {
                    "version": 2,
                    "reshard_after_forward": True,
                    "state_dict_type": "FULL_STATE_DICT",
                    # FSDP's own checkpointing, not the Trainer's (which would all-gather twice)
                    "activation_checkpointing": gpu,
                },
                "activation_checkpointing": False,
            }
        # zero3: DeepSpeed ZeRO stage 3 through accelerate; "auto" takes the Trainer's values.
        # The 16-bit weights are gathered at save time, so checkpoints are consolidated too.
        return {
            "deepspeed": {
                "zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
                "bf16": {"enabled": "auto"},
                "train_micro_batch_size_per_gpu": "auto",
                "train_batch_size": "auto",
                "gradient_accumulation_steps": "auto",
                "gradient_clipping": "auto",
            }
        }

    def callbacks(self, selection: dict[str, Any] | None = None) -> list[Any]:
        """The progress and checkpoint callbacks, plus early stopping when `selection` (see
        select_best) keeps the best model and earlyStoppingPatience is set."""
        from transformers import EarlyStoppingCallback

        callbacks = [
            ProgressCallback(self.ctx.progress, self.metrics),
            self.preemption,
            CheckpointCallback(self.checkpoints, self.metrics, self.preemption),
        ]
        if selection and self.cfg.early_stopping_patience > 0:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=self.cfg.early_stopping_patience))
        return callbacks

    def select_best(self, has_val: bool, metric: str = "eval_loss", greater_is_better: bool = False) -> dict[str, Any]:
        """Trainer arguments that evaluate every evalEvery steps (else every epoch), checkpoint at
        each new best `metric` and restore the best model at the end; {} without a val split or
        with earlyStoppingPatience 0 (then the last model is kept)."""
        if not has_val or self.cfg.early_stopping_patience == 0:
            return {}
        every = {"eval_strategy": "steps", "eval_steps": self.cfg.eval_every} if self.cfg.eval_every else {
            "eval_strategy": "epoch"
        }
        # a checkpoint at each new best: the one restored at the end, and where a restarted step resumes
        return {
            **every,
            "save_strategy": "best",
            "load_best_model_at_end": True,
            "metric_for_best_model": metric,
            "greater_is_better": greater_is_better,
        }

    def selection_figures(self, trainer: Any, selection: dict[str, Any]) -> dict[str, Any]:
        """What model selection did: the best step and score, and whether early stopping cut the
        run short (also announced as a progress event, so that it shows while the run goes on)."""
        if not selection:
            return {"earlyStopped": False}
        state = trainer.state
        best = state.best_model_checkpoint and checkpoint_step(Path(state.best_model_checkpoint))
        stopped = state.global_step < state.max_steps
        figures = {
            "earlyStopped": stopped,
            "bestStep": best,
            "bestMetric": selection["metric_for_best_model"],
            "bestScore": round(state.best_metric, 4) if state.best_metric is not None else None,
        }
        if stopped:
            self.ctx.progress.event("stopped early", atStep=state.global_step, bestStep=best)
        return figures

    def _note(self, metrics: dict[str, Any]) -> str | None:
        """The step's line in the run status, when training did not simply run to the end."""
        if not metrics.get("earlyStopped"):
            return None
        return (
            f"stopped early at step {metrics['steps']}: no better {metrics['bestMetric']} in "
            f"{self.cfg.early_stopping_patience} evaluation(s); kept the best model, step {metrics['bestStep']}"
        )

    def fit(self, trainer: Any) -> dict[str, Any]:
        """Train, resuming from the restored checkpoint; returns the run's throughput figures."""
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # stdout carries only progress lines
        started = time.time()
        tokens_before = 0
        if self.resume_from is not None:
            state = json.loads((self.resume_from / "trainer_state.json").read_text())
            tokens_before = state.get("num_input_tokens_seen", 0)
            self.ctx.progress.event("resuming", fromStep=state.get("global_step"))
        trainer.train(resume_from_checkpoint=str(self.resume_from) if self.resume_from else None)
        if self.preemption.stopped_early(trainer.state):
            raise Preempted(
                f"SIGTERM: saved checkpoint-{self.preemption.at_step} to the store and stopped; "
                "the next attempt resumes from it"
            )
        seconds = time.time() - started
        tokens = trainer.state.num_input_tokens_seen - tokens_before
        return {
            "steps": trainer.state.global_step,
            "trainSeconds": round(seconds, 2),
            "trainTokens": trainer.state.num_input_tokens_seen,
            "trainTokensPerSec": round(tokens / seconds, 1) if seconds > 0 else None,
            "resumedFromStep": checkpoint_step(self.resume_from) if self.resume_from else None,
            "precision": "bf16-autocast" if trainer.args.bf16 else "fp32",
            "worldSize": ranks.world_size(),
            "sharded": trainer.is_fsdp_enabled,  # what the Trainer did, not only what the spec asked
            "peakRssMiBPerRank": peak_rss_per_rank(),
        }

    def save_weights(self, trainer: Any, tokenizer: Any) -> str:
        """Save the trained weights and the tokenizer under ctx.out; returns the folder's name:
        "adapter" with LoRA, else "model"."""
        artifact = "adapter" if self.cfg.lora else "model"
        state = trainer.accelerator.get_state_dict(trainer.model)  # every rank: FSDP gathers to rank 0
        if ranks.is_main():
            trainer.model.save_pretrained(self.ctx.out / artifact, state_dict=state)
            tokenizer.save_pretrained(self.ctx.out / artifact)
        return artifact

    def finish(self, artifact: str, metrics: dict[str, Any], config: dict[str, Any]) -> StepResult:
        """Write train_config.json and loss.png, upload everything under ctx.out, close tracking.

        `artifact` is the folder under ctx.out holding the trained weights (see save_weights).
        """
        if not ranks.is_main():
            return StepResult(metrics=metrics)
        out = self.ctx.out
        losses = [loss for _, loss in self.metrics.series("loss")]
        metrics = {
            "firstLoss": round(losses[0], 4) if losses else None,
            "lastLoss": round(losses[-1], 4) if losses else None,
            **metrics,
        }
        train_config = {
            "method": self.cfg.method,
            "baseModel": self.ctx.spec.model.model_dump(mode="json", by_alias=True, exclude_none=True),
            "train": self.cfg.model_dump(mode="json", by_alias=True),
            "resolved": config,
            "versions": {p: metadata.version(p) for p in ("torch", "transformers", "trl", "peft")},
            "hardware": hardware(),
        }
        (out / "train_config.json").write_text(json.dumps(train_config, indent=2))
        plot_loss(self.metrics, out / LOSS_PLOT, f"{self.ctx.name}: {self.cfg.method} training loss")
        write_training_report(self.ctx, train_config, metrics, has_val_loss=bool(self.metrics.series("eval_loss")))
        self.tracker.summary(metrics)
        self.tracker.finish()
        self.ctx.upload_outputs()
        self.checkpoints.clear()
        tokenize_once.clear()
        note = self._note(metrics)
        return StepResult(
            metrics=metrics,
            outputs={artifact: f"{artifact}/", "lossPlot": LOSS_PLOT, "trainingReport": TRAINING_REPORT},
            extra={"note": note} if note else {},
        )
