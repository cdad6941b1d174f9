"""The pack step's work on a large corpus of mixed formats: rows per second and peak RSS.

    python -m bench.pack_scale            # 1M rows
    python -m bench.pack_scale --quick    # 100k rows

The rows are bench.instructions' synthetic instructions (with its planted duplicates), each
with an answer, written in five formats as five sources: openai_chat JSONL, ShareGPT as a JSON
array, alpaca JSONL with a system prompt, TRL prompt/completion JSONL, and CSV; two of them
name no format, so detection is measured too. A child process does what the step does with
them, reading and detecting each file, packing (filters, exact and near-duplicate dedupe,
openai_chat rows, the seeded split) and writing the splits as JSONL, and reports its time per
phase, CPU time and peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from bench import report
from bench.instructions import generate

SEED = 11
# (file, format or None to detect it)
SOURCES = [
    ("chat.jsonl", "openai_chat"),
    ("share.json", None),
    ("alpaca.jsonl", "alpaca"),
    ("prompts.jsonl", None),
    ("qa.csv", "csv"),
]


def _answer(prompt: str, i: int) -> str:
    return f"Answer {i}: " + " ".join(reversed(prompt.split()[:12]))


def write_corpus(n: int, work: Path) -> list[dict[str, Any]]:
    """n rows spread over the five sources; the data.sources entries for them."""
    texts = generate(n, seed=SEED).texts
    parts = [texts[k :: len(SOURCES)] for k in range(len(SOURCES))]
    offset = [sum(len(p) for p in parts[:k]) for k in range(len(SOURCES))]

    def rows(k: int):
        return ((offset[k] + j, q, _answer(q, offset[k] + j)) for j, q in enumerate(parts[k]))

    with open(work / "chat.jsonl", "w", encoding="utf-8") as f:
        for i, q, a in rows(0):
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
    (work / "share.json").write_text(json.dumps(
        [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]} for _, q, a in rows(1)]
    ), encoding="utf-8")
    with open(work / "alpaca.jsonl", "w", encoding="utf-8") as f:
        for _, q, a in rows(2):
            f.write(json.dumps({"instruction": q, "input": "", "output": a, "system": "Be brief."}) + "\n")
    with open(work / "prompts.jsonl", "w", encoding="utf-8") as f:
        for _, q, a in rows(3):
            f.write(json.dumps({"prompt": q, "completion": a}) + "\n")
    with open(work / "qa.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["question", "answer"])
        out.writerows((q, a) for _, q, a in rows(4))
    return [{"path": str(work / name), **({"format": fmt} if fmt else {})} for name, fmt in SOURCES]


def child(argv: Sequence[str]) -> None:
    from jobs.common.spec import DataSource, PackStep
    from jobs.pack.detect import detect_format
    from jobs.pack.packer import pack
    from jobs.pack.readers import read_file, read_source

    sources = [DataSource.model_validate(s) for s in json.loads(Path(argv[0]).read_text())]
    out = Path(argv[1])
    cpu0, t0 = report.cpu_seconds(), time.perf_counter()
    records, described = [], []
    for i, source in enumerate(sources):
        data = read_file(Path(source.path), source.path)
        fmt = source.format or detect_format(source.path, data)
        rows = read_source(source.path, data, fmt, columns=source.columns)
        records += rows
        described.append({"index": i, "format": fmt, "rows": len(rows)})
    t1 = time.perf_counter()
    packed = pack(records, PackStep(), described)
    t2 = time.perf_counter()
    for name, rows in packed.splits.items():
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    t3 = time.perf_counter()
    report.emit_result({
        "rows": len(records), "out": packed.report["counts"]["out"], "formats": [d["format"] for d in described],
        "dropped": {k: v["count"] for k, v in packed.report["dropped"].items()},
        "read": t1 - t0, "pack": t2 - t1, "write": t3 - t2, "seconds": t3 - t0,
        "cpuSeconds": report.cpu_seconds() - cpu0, "peakRss": report.self_peak_rss(),
    })


def measure(n: int, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    sources = write_corpus(n, work)
    print(f"pack_scale: {n} rows written in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    spec = work / "sources.json"
    spec.write_text(json.dumps(sources))
    (work / "out").mkdir()
    return report.run_python("bench.pack_scale", "--child", str(spec), str(work / "out")).result()


def build_section(r: dict[str, Any]) -> report.Section:
    rate = r["rows"] / r["seconds"]
    return report.Section(
        title="Pack on mixed formats",
        columns=["rows in", "sources", "read + detect", "pack (filter, dedupe, split)", "write", "total",
                 "rows/s", "its CPU time", "peak RSS", "written", "dropped"],
        rows=[[f"{r['rows']:,}", ", ".join(r["formats"]), report.fmt_s(r["read"]), report.fmt_s(r["pack"]),
               report.fmt_s(r["write"]), report.fmt_s(r["seconds"]), f"{rate:,.0f}", report.fmt_s(r["cpuSeconds"]),
               report.fmt_mib(r["peakRss"]), f"{r['out']:,}",
               ", ".join(f"{k}: {v:,}" for k, v in r["dropped"].items() if v)]],
        meaning=(
            f"The step reads, detects, packs and writes {r['rows']:,} rows at {rate:,.0f} rows/s "
            f"({r['rows'] / r['cpuSeconds']:,.0f} per CPU-second, the steadier figure on a shared machine), "
            f"holding every row in memory: {report.fmt_mib(r['peakRss'])} at its peak."
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.pack_scale", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--rows", type=int, default=None)
    args = p.parse_args(argv)
    n = args.rows or (100_000 if args.quick else 1_000_000)
    where = report.machine()
    with tempfile.TemporaryDirectory(prefix="bench-pack-") as work:
        result = measure(n, Path(work))
    report.publish(build_section(result), report.command_line("bench.pack_scale", argv), report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
