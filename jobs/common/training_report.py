"""training_report.md: one Markdown page a person reads after a run with a train step.

It says what went in (pack's counts per split and what was dropped, and why), how the model was
trained (every hyperparameter, the hardware, the time), the train and val loss curves, and, once
the evaluate step ran, the before/after metrics and sample generations side by side.

The train step writes it with what it knows; the evaluate step writes the whole page beside
report.html. Rendering is pure (`render`); the steps gather the parts.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from typing import Any

FILE = "training_report.md"
LOSS_PLOT = "loss.png"
SAMPLES = 10


@dataclass
class ReportParts:
    run: str
    model: str
    train_config: dict[str, Any]  # train_config.json: method, baseModel, train, versions, hardware
    train_metrics: dict[str, Any]  # the train step's manifest metrics
    pack_report: dict[str, Any] | None = None  # pack's report.json
    loss_plot: str | None = None  # a PNG beside the report
    has_val_loss: bool = False
    before_after: list[dict[str, Any]] | None = None  # rows of name, base, tuned, delta
    samples: list[dict[str, Any]] = field(default_factory=list)  # id, input, expected, base, tuned answers
    gate: dict[str, Any] | None = None


def hardware() -> dict[str, Any]:
    """What the training ran on: the machine, the accelerators, the threads torch used."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torchThreads": torch.get_num_threads(),
        "gpus": gpus,
    }


def _cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, line breaks kept as <br>."""
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:.4g}"
    elif not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    return value.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _data_section(report: dict[str, Any] | None) -> list[str]:
    lines = ["## Data", ""]
    if report is None:
        return lines + ["The pack step's report.json was not found.", ""]
    counts = report["counts"]
    lines.append(
        f"{counts['in']} rows in, {counts['out']} kept, {counts['dropped']} dropped (format {report.get('format')})."
    )
    lines.append("")
    labels = report.get("labels")
    splits = ("train", "val", "test")
    if labels:
        header = ["split", "rows", *sorted(labels["all"])]
        rows = [[s, counts[s], *(labels[s].get(label, 0) for label in sorted(labels["all"]))] for s in splits]
    else:
        header, rows = ["split", "rows"], [[s, counts[s]] for s in splits]
    lines += _table(header, rows) + [""]
    dropped = [(reason, d) for reason, d in report.get("dropped", {}).items() if d.get("count")]
    if dropped:
        lines += ["Dropped:", ""] + _table(
            ["reason", "rows", "what it means"], [[r, d["count"], d.get("description")] for r, d in dropped]
        ) + [""]
    else:
        lines += ["No row was dropped.", ""]
    warnings = report.get("warnings") or []
    lines += [f"- warning: {w}" for w in warnings] + ([""] if warnings else [])
    return lines


def _training_sections(parts: ReportParts) -> list[str]:
    config, m = parts.train_config, parts.train_metrics
    settings = [("method", config.get("method"))]
    settings += [(f"baseModel.{k}", v) for k, v in (config.get("baseModel") or {}).items()]
    settings += _flatten(config.get("train") or {})
    lines = ["## Hyperparameters", ""] + _table(["setting", "value"], [list(s) for s in settings]) + [""]
    hw = config.get("hardware") or {}
    rows = [
        ["machine", hw.get("platform")],
        ["CPUs (torch threads)", f"{hw.get('cpus')} ({hw.get('torchThreads')})" if hw else None],
        ["GPUs", ", ".join(hw.get("gpus") or []) or "none"],
        ["precision", m.get("precision")],
        ["libraries", ", ".join(f"{k} {v}" for k, v in (config.get("versions") or {}).items())],
        ["optimizer steps", m.get("steps")],
        ["training time", f"{m['trainSeconds']:.1f} s" if m.get("trainSeconds") is not None else None],
        ["tokens trained on", m.get("trainTokens")],
        ["tokens per second", m.get("trainTokensPerSec")],
        ["loss, first and last step", f"{m.get('firstLoss')} -> {m.get('lastLoss')}"],
    ]
    if m.get("resumedFromStep"):
        rows.append(["resumed from step", m["resumedFromStep"]])
    if m.get("bestStep") is not None:
        rows.append(["best model", f"step {m['bestStep']} ({m.get('bestMetric')} {m.get('bestScore')})"])
    rows.append(["stopped early", "yes" if m.get("earlyStopped") else "no"])
    lines += ["## Hardware and time", ""] + _table(["", ""], rows) + [""]
    lines += ["## Loss curves", ""]
    if parts.loss_plot:
        curves = "train and val loss" if parts.has_val_loss else "train loss (no val split, so no val loss)"
        lines += [f"![{curves}]({parts.loss_plot})", ""]
    else:
        lines += ["The train step recorded no loss values.", ""]
    return lines


def _evaluation_sections(parts: ReportParts) -> list[str]:
    lines = ["## Before / after (test split)", ""]
    if parts.before_after is None:
        return lines + ["No evaluate step has run for this model yet: see the evaluate step's training_report.md.", ""]
    lines += _table(
        ["metric", "base", "tuned", "change"],
        [[r["name"], r["base"], r["tuned"], f"{r['delta']:+.4f}"] for r in parts.before_after],
    ) + [""]
    if parts.gate:
        verdict = "met" if parts.gate["passed"] else "NOT met"
        lines += [f"Promotion gate `{parts.gate['expression']}`: **{verdict}** ({parts.gate['explanation']})", ""]
    lines += [f"## Sample generations (first {len(parts.samples)})", ""]
    lines += _table(
        ["id", "input", "expected", "base", "tuned"],
        [[s["id"], s["input"], s["expected"], s["base"], s["tuned"]] for s in parts.samples],
    ) + [""]
    return lines


def render(parts: ReportParts) -> str:
    lines = [f"# Training report: {parts.run}", "", f"{parts.train_config.get('method')} of {parts.model}.", ""]
    lines += _data_section(parts.pack_report)
    lines += _training_sections(parts)
    lines += _evaluation_sections(parts)
    return "\n".join(lines)
