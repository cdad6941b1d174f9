"""report.html, metrics.png and confusion.png: the before/after table, the training loss curve,
the charts, and for labels the per-label table, the confusion matrices and the answers outside
the label set.

Images are embedded as base64 PNGs and the styles are inline, so the report
renders from a file with no network access.
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

from jobs.common.testset import Example

TEMPLATE = Path(__file__).with_name("report.html.jinja")
SAMPLE_ROWS = 25
RATE_KEYS = ("passRate", "exactMatch", "tokenF1", "accuracy", "f1Macro")
LOSS_KEYS = ("loss", "perplexity")
LABELS = {
    "passRate": "pass rate",
    "exactMatch": "exact match",
    "tokenF1": "token F1",
    "loss": "loss",
    "perplexity": "perplexity",
    "judgePassRate": "judge pass rate",
    "accuracy": "accuracy",
    "f1Macro": "F1 (macro)",
    "f1Micro": "F1 (micro)",
    "precisionMacro": "precision (macro)",
    "recallMacro": "recall (macro)",
    "f1Weighted": "F1 (weighted)",
}
LOWER_IS_BETTER = {"loss", "perplexity"}


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def metrics_chart(base: dict[str, Any], tuned: dict[str, Any]) -> bytes:
    """Grouped bars, base vs tuned: the rates on one panel (0..1), loss and perplexity on their own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [k for k in RATE_KEYS if base.get(k) is not None]
    if "accuracy" in rates:  # a classifier's pass rate is its accuracy: one bar is enough
        rates.remove("passRate")
    panels = [rates] + [[k] for k in LOSS_KEYS if base.get(k) is not None and math.isfinite(base[k])]
    widths = [max(len(keys), 1) for keys in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.6 * sum(widths) + 1, 3.6), width_ratios=widths, squeeze=False)
    for ax, keys in zip(axes[0], panels):
        xs = range(len(keys))
        for offset, (who, values, color) in enumerate((("base", base, "#9aa5b1"), ("tuned", tuned, "#2f6fde"))):
            bars = ax.bar([x + (offset - 0.5) * 0.38 for x in xs], [values[k] for k in keys], 0.38, label=who, color=color)
            ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_xticks(list(xs), [LABELS[k] for k in keys])
        if keys is rates:
            ax.set_ylim(0, 1.1)
        ax.margins(y=0.12)
        ax.spines[["top", "right"]].set_visible(False)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", ncols=2, frameon=False)
    fig.suptitle("base vs tuned on the test split", x=0.02, ha="left")
    fig.tight_layout()
    return _png(fig)


def confusion_chart(base: dict[str, Any], tuned: dict[str, Any]) -> bytes:
    """Base and tuned confusion matrices side by side (rows: expected, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(len(base["confusion"]["labels"]), len(tuned["confusion"]["labels"]))
    fig, axes = plt.subplots(1, 2, figsize=(2 * (2.5 + 0.55 * size), 2.2 + 0.55 * size))
    for ax, (who, side) in zip(axes, (("base", base), ("tuned", tuned))):
        names, matrix = side["confusion"]["labels"], np.array(side["confusion"]["matrix"])
        shown = [n if len(n) <= 14 else n[:13] + "…" for n in names]
        ConfusionMatrixDisplay(matrix, display_labels=shown).plot(ax=ax, colorbar=False, cmap="Blues", xticks_rotation=45)
        ax.set_title(f"{who} (F1 macro {side['f1Macro']:.3f})")
    fig.tight_layout()
    return _png(fig)


def read_train_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def loss_curve(rows: list[dict[str, Any]]) -> bytes | None:
    """Every loss-like series in the train step's metrics.jsonl against its step."""
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        step = row.get("step")
        if not isinstance(step, (int, float)):
            continue
        for key, value in row.items():
            if "loss" in key.lower() and isinstance(value, (int, float)) and math.isfinite(value):
                series.setdefault(key, []).append((step, value))
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for key, points in sorted(series.items()):
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def comparison_table(
    base: dict[str, Any], tuned: dict[str, Any], intervals: dict[str, dict[str, float]] | None = None
) -> list[dict[str, Any]]:
    """One row per metric; `interval` is the change's bootstrap interval (low, high) where there is one."""
    rows = []
    for key, label in LABELS.items():
        b, t = base.get(key), tuned.get(key)
        if b is None or t is None:
            continue
        delta = t - b
        better = (delta < 0) if key in LOWER_IS_BETTER else (delta > 0)
        found = (intervals or {}).get(key)
        rows.append({"name": label, "base": b, "tuned": t, "delta": delta, "better": better if delta else None,
                     "interval": (found["low"], found["high"]) if found else None})
    return rows


def render(context: dict[str, Any]) -> str:
    from jinja2 import Environment, StrictUndefined

    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v: "" if v is None else (f"{v:.4f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v))
    return env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(**context)


def write(
    out: Path,
    metrics: dict[str, Any],
    examples: list[Example],
    rows: list[dict[str, Any]],
    train_metrics: Path,
    *,
    model_name: str,
) -> dict[str, str]:
    """Write the report and its charts; returns the files written by output name."""
    written = {"report": "report.html", "chart": "metrics.png"}
    chart = metrics_chart(metrics["base"], metrics["tuned"])
    (out / written["chart"]).write_bytes(chart)
    confusion = None
    if "confusion" in metrics["base"]:
        confusion = confusion_chart(metrics["base"], metrics["tuned"])
        written["confusion"] = "confusion.png"
        (out / written["confusion"]).write_bytes(confusion)
    curve = loss_curve(read_train_metrics(train_metrics))
    samples = [
        {"id": e.id, "input": e.input, "expected": e.expected, "base": r["base"], "tuned": r["tuned"]}
        for e, r in list(zip(examples, rows))[:SAMPLE_ROWS]
    ]
    html = render(
        {
            "model": model_name,
            "metrics": metrics,
            "table": comparison_table(metrics["base"], metrics["tuned"], (metrics.get("intervals") or {}).get("deltas")),
            "chart": base64.b64encode(chart).decode(),
            "curve": base64.b64encode(curve).decode() if curve else None,
            "confusion": base64.b64encode(confusion).decode() if confusion else None,
            "samples": samples,
            "shown": len(samples),
        }
    )
    (out / written["report"]).write_text(html, encoding="utf-8")
    return written
