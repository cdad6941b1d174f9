"""Trainer callbacks: live progress lines and metrics.jsonl records."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from jobs.common.progress import Progress
from jobs.common.tracking import MetricsLog

# Method-specific training figures worth keeping next to the loss (TRL's SFT, DPO and GRPO logs;
# GRPO also logs each reward term's mean as rewards/<name>/mean).
TRAIN_EXTRAS = (
    "mean_token_accuracy",
    "rewards/accuracies",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "log_odds_ratio",
    "reward",
    "reward_std",
    "kl",
    "completions/mean_length",
)
MAX_LINES = 1000


class ProgressCallback(TrainerCallback):
    """Turns the Trainer's logs into metrics.jsonl records and progress lines
    (percent, step/total, loss, tokens/s, ETA). Tokens are the non-padding input tokens
    the Trainer counts (`include_num_input_tokens_seen`)."""

    def __init__(self, progress: Progress, metrics: MetricsLog):
        self.progress = progress
        self.metrics = metrics
        self.started = self.last_time = 0.0
        self.start_step = self.last_tokens = 0
        self.tokens_per_sec: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last_time = time.time()
        self.start_step = state.global_step  # > 0 after a resume
        self.last_tokens = state.num_input_tokens_seen
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if "loss" in logs:
            now = time.time()
            tokens = state.num_input_tokens_seen
            self.tokens_per_sec = (tokens - self.last_tokens) / max(now - self.last_time, 1e-9)
            self.last_time, self.last_tokens = now, tokens
            record.update(
                loss=logs["loss"],
                lr=logs.get("learning_rate"),
                grad_norm=logs.get("grad_norm"),
                tokens=tokens,
                tokens_per_sec=round(self.tokens_per_sec, 1),
            )
            record.update({k: logs[k] for k in TRAIN_EXTRAS if k in logs})
            record.update({k: v for k, v in logs.items() if k.startswith("rewards/") and k.endswith("/mean")})
        evals = {k: v for k, v in logs.items() if k.startswith("eval_")}
        record.update(evals)
        if "loss" in logs or evals:
            self.metrics.write(record)
        if "loss" in logs:
            self._emit(state, logs["loss"], logs.get("reward"))
        return control

    def _emit(self, state, loss: float, reward: float | None) -> None:
        # at most about MAX_LINES progress lines per run, and always the last step
        every = max(1, state.max_steps // MAX_LINES)
        if state.global_step % every and state.global_step < state.max_steps:
            return
        now = time.time()
        done = state.global_step - self.start_step
        eta = (now - self.started) / done * (state.max_steps - state.global_step) if done else None
        self.progress.update(
            state.global_step,
            state.max_steps,
            loss=round(float(loss), 4),
            **({"reward": round(float(reward), 4)} if reward is not None else {}),
            tokensPerSec=round(self.tokens_per_sec, 1) if self.tokens_per_sec is not None else None,
            etaSeconds=round(eta, 1) if eta is not None else None,
        )
