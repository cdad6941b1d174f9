"""ftctl run RUN.yaml: run the enabled steps on this machine, with live progress."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from jobs.cli.local_store import store_uri
from jobs.cli.report import print_summary
from jobs.common.specio import load_run
from jobs.common.store import open_store
from jobs.pipeline.local import LocalRunner


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a FineTuneRun locally, one child process per step")
    p.add_argument("file", type=Path)
    p.add_argument(
        "overrides", nargs="*", metavar="FIELD=VALUE", help="spec overrides, e.g. steps.train.learningRate=1e-4"
    )
    p.add_argument("--store", help="store URI or path (default: FT_STORE_URI, spec.store.uri, ./ft-store)")
    p.add_argument("--work-dir", type=Path, help="scratch and logs (default: .ft-work/<run>)")
    p.add_argument("--force", action="store_true", help="ignore the step cache")
    p.set_defaults(func=run)


def _detail(msg: dict[str, Any]) -> str:
    parts = []
    if msg.get("current") is not None:
        parts.append(f"{msg['current']}/{msg['total']}")
    if msg.get("loss") is not None:
        parts.append(f"loss {msg['loss']:.3f}")
    if msg.get("tokensPerSec"):
        parts.append(f"{msg['tokensPerSec']:.0f} tok/s")
    if msg.get("etaSeconds") is not None:
        parts.append(f"eta {msg['etaSeconds']:.0f}s")
    return "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    console = Console()
    ftr = load_run(args.file, overrides=args.overrides)  # the run stores this effective spec
    store = open_store(store_uri(ftr, args.store))
    work = (args.work_dir or Path(".ft-work") / ftr.metadata.name).resolve()
    live = console.is_terminal
    bars = Progress(
        TextColumn("{task.fields[step]:<9}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        disable=not live,
    )
    tasks = {s: bars.add_task("", total=100, step=s, detail="waiting") for s in ftr.spec.steps.enabled()}
    last_printed: dict[str, float] = {}

    def on_update(step: str, msg: dict[str, Any]) -> None:
        if msg["type"] == "progress":
            bars.update(tasks[step], completed=msg.get("percent") or 0, detail=_detail(msg))
            # Without a terminal, print a line at most every 10 points of progress.
            pct = msg.get("percent") or 0
            if not live and pct - last_printed.get(step, -10) >= 10:
                last_printed[step] = pct
                console.print(f"[{step}] {pct:5.1f}%  {_detail(msg)}", markup=False)
        elif msg["type"] == "event":
            text = msg.get("message", "")
            if text in ("cached", "succeeded"):
                bars.update(tasks[step], completed=100, detail=text)
            elif text in ("started", "failed"):
                bars.update(tasks[step], detail=text)
            if text == "packed":
                console.print(f"[{step}] {packed_summary(msg)}", markup=False, soft_wrap=True)
            if text in ("started", "cached", "succeeded", "failed"):
                error = f": {msg['error']}" if msg.get("error") else ""
                console.print(f"[{step}] {text}{error}", markup=False, soft_wrap=True)

    runner = LocalRunner(ftr, store, args.file.resolve().parent, work, force=args.force, on_update=on_update)
    t0 = time.time()
    with bars:
        try:
            status = runner.execute()
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: the running step was stopped; nothing half-written was committed[/]")
            return 130
    print_summary(console, store, ftr.metadata.namespace, ftr.metadata.name)
    executed = ", ".join(runner.executed) or "none"
    console.print(f"steps executed: {executed}; wall time {time.time() - t0:.1f}s", soft_wrap=True)
    return 0 if status.phase == "Succeeded" else 1


def packed_summary(msg: dict[str, Any]) -> str:
    """Every row accounted for: written, or dropped under a reason that report.json explains."""
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(msg.get("reasons", {}).items()))
    text = f"{msg.get('in')} rows in, {msg.get('out')} written, {msg.get('dropped')} dropped"
    text += f" ({reasons})" if reasons else ""
    warnings = msg.get("warnings") or 0
    return text + (f"; {warnings} warning(s)" if warnings else "") + "; see report.json"
