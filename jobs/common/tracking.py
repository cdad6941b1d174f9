"""Experiment tracking: metrics.jsonl and a loss plot always, W&B when the spec asks for it.

A step talks to one `MetricsLog`; it writes every record to metrics.jsonl and hands it to a
`Tracker`, which is a `WandbTracker` when spec.tracking.wandb is set and a `NullTracker`
otherwise, so no caller checks whether W&B is on.

The W&B API key comes only from the environment (WANDB_API_KEY, mounted from the Secret that
tracking.wandb.apiKeySecret names); it is never part of the spec.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Protocol

from jobs.common.errors import InvalidInput
from jobs.common.spec import Wandb

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def log(self, record: dict[str, Any], step: int) -> None: ...
    def summary(self, metrics: dict[str, Any]) -> None: ...
    def finish(self) -> None: ...


class NullTracker:
    def log(self, record: dict[str, Any], step: int) -> None:
        pass

    def summary(self, metrics: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker:
    """One W&B run; a restarted step resumes the same run (`run_id` is stable across restarts)."""

    def __init__(self, cfg: Wandb, *, run_id: str, name: str, config: dict[str, Any], work_dir: Path):
        if cfg.mode == "online" and not os.environ.get("WANDB_API_KEY"):
            raise InvalidInput(
                "tracking.wandb.mode: online needs the W&B API key in WANDB_API_KEY "
                "(mounted from the Secret named by tracking.wandb.apiKeySecret)"
            )
        import wandb

        work_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=name,
            id=run_id,
            resume="allow",
            mode=cfg.mode,
            dir=str(work_dir),
            config=config,
        )

    def log(self, record: dict[str, Any], step: int) -> None:
        self.run.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        self.run.summary.update(metrics)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def open_tracker(
    cfg: Wandb | None, *, run_id: str, name: str, config: dict[str, Any], work_dir: Path
) -> Tracker:
    if cfg is None or cfg.mode == "disabled":
        return NullTracker()
    return WandbTracker(cfg, run_id=run_id, name=name, config=config, work_dir=work_dir)


class MetricsLog:
    """metrics.jsonl (one JSON object per record, each with a "step") fed to a tracker as well."""

    def __init__(self, path: Path, tracker: Tracker):
        self.path = path
        self.tracker = tracker
        self.records: list[dict[str, Any]] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():  # carried over from a checkpoint
            self.records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: _plain(v) for k, v in record.items()}
        self.records.append(clean)
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")
        self.tracker.log(clean, step=int(clean.get("step", 0)))

    def truncate(self, step: int) -> None:
        """Forget records after `step` (training resumes from a checkpoint taken at `step`)."""
        self.records = [r for r in self.records if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(r["step"], r[key]) for r in self.records if isinstance(r.get(key), (int, float))]


def _plain(value: Any) -> Any:
    """JSON-safe scalars: tensors and numpy numbers become floats, NaN/inf become None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


SMOOTH_FROM = 10


def _moving_average(values: tuple[float, ...], window: int) -> list[float]:
    """Trailing mean over up to `window` values, so the curve starts at the first step."""
    out = []
    for i in range(len(values)):
        recent = values[max(0, i - window + 1) : i + 1]
        out.append(sum(recent) / len(recent))
    return out


def plot_loss(metrics: MetricsLog, png: Path, title: str) -> None:
    """The loss curve (train, and eval when present) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    train = metrics.series("loss")
    if train:
        steps, losses = zip(*train)
        ax.plot(steps, losses, alpha=0.35 if len(train) >= SMOOTH_FROM else 1.0, label="train loss")
        if len(train) >= SMOOTH_FROM:  # per-batch losses are noisy; the trend is what a reader wants
            ax.plot(steps, _moving_average(losses, max(2, len(train) // 10)), label="train loss (moving average)")
    evals = metrics.series("eval_loss")
    if evals:
        ax.plot(*zip(*evals), marker="o", markersize=4, label="eval loss")
    _save_steps_plot(fig, ax, png, "loss", title)


def plot_reward(metrics: MetricsLog, png: Path, title: str, terms: list[str]) -> None:
    """GRPO's mean reward per step, and each reward term's mean, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key, name in (("reward", "mean reward (weighted)"), *((f"rewards/{t}/mean", t) for t in terms)):
        series = metrics.series(key)
        if series:
            ax.plot(*zip(*series), label=name)
    _save_steps_plot(fig, ax, png, "reward", title)


def _save_steps_plot(fig, ax, png: Path, ylabel: str, title: str) -> None:
    """Label a per-step plot and write it as a PNG."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
