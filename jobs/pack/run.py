"""The pack step's body: read every data source, pack, write the splits and report.json.

Nothing is written before every source has been read and packed, so bad input
leaves no output behind (and the harness commits no manifest).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jobs.common.errors import InvalidInput
from jobs.common.handoff import EVAL_RESULTS, eval_results
from jobs.common.spec import DataSource
from jobs.common.stepctx import StepContext, StepResult
from jobs.pack.detect import detect_format
from jobs.pack.packer import pack
from jobs.pack.readers import read_file, read_source
from jobs.pack.records import Record
from jobs.pack.split import SPLITS

def _source_file(ctx: StepContext, source: DataSource) -> tuple[str, Path]:
    """(name for messages, local path) of a data source."""
    if source.from_step == "eval":
        return f"eval step {EVAL_RESULTS}", eval_results(ctx)
    return source.path, ctx.resolve(source.path)


def read_sources(ctx: StepContext) -> tuple[list[Record], list[dict[str, Any]]]:
    records: list[Record] = []
    described = []
    sources = ctx.spec.data.sources
    for i, source in enumerate(sources):
        try:
            name, path = _source_file(ctx, source)
            data = read_file(path, name)
            fmt = source.format or ("eval_results" if source.from_step else detect_format(name, data))
            rows = read_source(
                name, data, fmt, columns=source.columns, curate=ctx.config.curate, chat_fields=source.chat_fields
            )
        except InvalidInput as err:
            raise type(err)(f"data.sources[{i}]: {err.message}") from None
        for row in rows:
            row.split = source.split
        records += rows
        described.append({
            "index": i, "location": name, "format": fmt, "detected": source.format is None, "rows": len(rows),
            "split": source.split,
        })
        ctx.progress.update(i + 1, len(sources), rows=len(records))
    return records, described


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def run_step(ctx: StepContext) -> StepResult:
    records, sources = read_sources(ctx)
    packed = pack(records, ctx.config, sources)
    for name in SPLITS:
        _write_jsonl(ctx.out / f"{name}.jsonl", packed.splits[name])
    (ctx.out / "report.json").write_text(json.dumps(packed.report, indent=2, ensure_ascii=False), encoding="utf-8")
    ctx.upload_outputs()
    counts = packed.report["counts"]
    reasons = {reason: d["count"] for reason, d in packed.report["dropped"].items() if d["count"]}
    ctx.progress.event("packed", **counts, reasons=reasons, warnings=len(packed.report["warnings"]))
    return StepResult(
        metrics={
            "rowsIn": counts["in"],
            "rowsOut": counts["out"],
            "dropped": counts["dropped"],
            **{name: counts[name] for name in SPLITS},
        },
        outputs={**{name: f"{name}.jsonl" for name in SPLITS}, "report": "report.json"},
    )
