"""The train step's training_report.md: what went in, how it was trained, the loss curves. The
evaluate step writes the whole page, with before/after figures, once the model is evaluated."""

from __future__ import annotations

from typing import Any

from jobs.common.handoff import pack_report
from jobs.common.stepctx import StepContext
from jobs.common.training_report import FILE, LOSS_PLOT, ReportParts, render


def write_training_report(ctx: StepContext, train_config: dict[str, Any], metrics: dict[str, Any], *, has_val_loss: bool) -> None:
    parts = ReportParts(
        run=f"{ctx.namespace}/{ctx.name}",
        model=ctx.spec.model.name or ctx.spec.model.location,
        train_config=train_config,
        train_metrics=metrics,
        pack_report=pack_report(ctx),
        loss_plot=LOSS_PLOT if (ctx.out / LOSS_PLOT).is_file() else None,
        has_val_loss=has_val_loss,
    )
    (ctx.out / FILE).write_text(render(parts), encoding="utf-8")
