"""The run summary `ftctl run` and `ftctl status` print: steps, timings, outputs."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.table import Table

from jobs.common import artifacts, keys
from jobs.common.errors import MissingInput
from jobs.common.gate import GATE_KEYS, gate_name
from jobs.common.store import Store
from jobs.common.training_report import FILE as TRAINING_REPORT
from jobs.pipeline.local import read_status


def _seconds(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "-"
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return f"{(datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds():.0f}s"


def print_summary(console: Console, store: Store, namespace: str, run: str) -> dict:
    status = read_status(store, namespace, run)
    if status is None:
        raise MissingInput(f"run {namespace}/{run}: no status in {store.uri} (has it been run?)")
    table = Table(title=f"{namespace}/{run}: {status['phase']}")
    for col in ("step", "phase", "attempts", "wall", "step time", "message"):
        table.add_column(col)
    for s in status.get("steps", []):
        manifest = artifacts.read_manifest(store, namespace, run, s["name"]) or {}
        step_time = manifest.get("timings", {}).get("seconds")
        table.add_row(
            s["name"],
            s["phase"] + (" (cached)" if s.get("cached") else ""),
            str(s.get("attempts", 0)),
            _seconds(s.get("started"), s.get("finished")),
            f"{step_time:.1f}s" if step_time is not None else "-",
            (s.get("message") or "")[:200],
        )
    console.print(table)
    if status.get("error"):
        console.print(f"error {status['error']['code']}: {status['error']['message']}", style="red", markup=False, soft_wrap=True)
    for name, uri in sorted(status.get("artifacts", {}).items()):
        console.print(f"  {name:<14} {uri}", markup=False, soft_wrap=True)
    training = training_report_uri(store, namespace, run, status)
    if training:
        console.print(f"  training report: {training}", markup=False, soft_wrap=True)
    evaluate = artifacts.read_manifest(store, namespace, run, "evaluate")
    if evaluate:
        print_before_after(console, evaluate.get("metrics", {}))
    gguf = artifacts.read_manifest(store, namespace, run, "gguf")
    if gguf and gguf.get("metrics", {}).get("ollamaCreate"):
        console.print(f"  ollama:        {gguf['metrics']['ollamaCreate']}", markup=False, soft_wrap=True)
    return status


def training_report_uri(store: Store, namespace: str, run: str, status: dict) -> str | None:
    """Where the run's training_report.md is: the evaluate step's (written even when its gate
    failed and nothing was committed), else the train step's."""
    key = keys.join(keys.step_prefix(namespace, run, "evaluate"), TRAINING_REPORT)
    if store.size(key) is not None:
        return f"{store.uri}/{key}"
    return status.get("artifacts", {}).get("trainingReport")


def print_before_after(console: Console, metrics: dict) -> None:
    """The evaluate step's base vs tuned figures, from its manifest."""
    names = [(gate_name("", k), gate_name("base", k), gate_name("tuned", k)) for k in GATE_KEYS]
    rows = [(m, metrics[b], metrics[t]) for m, b, t in names if b in metrics and t in metrics]
    if not rows:
        return
    table = Table(title="before / after (test split)")
    for col in ("metric", "base", "tuned", "change"):
        table.add_column(col)
    for name, base, tuned in rows:
        table.add_row(name, f"{base:.4f}", f"{tuned:.4f}", f"{tuned - base:+.4f}")
    console.print(table)
