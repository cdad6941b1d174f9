"""Eval answer cache: an uncached eval against a cached rerun, same items, same endpoint.

    python -m bench.eval_cache            # 1,000 items, 0.5 s per model call
    python -m bench.eval_cache --quick    # 1,000 items, 0.1 s per model call

The endpoint is the OpenAI-compatible test server (tests/eval/openai_fake.py) on 127.0.0.1,
answering after a fixed latency and counting calls. The eval step runs as its own process
(`python -m jobs.eval`, as `ftctl run` starts it) with the default concurrency (4):
first with an empty store, then again with FT_FORCE=1 so that the step itself runs and
its answers come from the answer cache, then once more without it (the step cache).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from bench import report

GOAL_SPEEDUP = 50.0
RUN = "bench-eval"


def write_project(root: Path, items: int, base_url: str) -> Path:
    """An eval set of `items` distinct questions and a spec running only the eval step."""
    with open(root / "items.jsonl", "w") as f:
        for i in range(items):
            question = f"Question {i}: what is {i} plus {i + 1}?"
            f.write(json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": question}],
                                "expected": str(2 * i + 1)}) + "\n")
    spec = {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": RUN},
        "spec": {
            "model": {"hf": "served-model"},
            "steps": {"eval": {"items": "items.jsonl", "backend": {"endpoint": {"baseUrl": base_url, "model": "fake-1"}}}},
        },
    }
    path = root / "run.json"
    path.write_text(json.dumps(spec))
    return path


def run_eval(root: Path, spec: Path, force: bool) -> report.Child:
    env = report.python_env({
        "FT_SPEC_FILE": str(spec), "FT_STORE_URI": (root / "store").as_uri(), "FT_BASE_DIR": str(root),
        "FT_FORCE": "1" if force else "0",
    })
    proc = report.run_python("jobs.eval", env=env, cwd=root, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"the eval step failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def cache_hit(stdout: str) -> bool:
    """Whether a step's progress lines say it was answered from the step cache."""
    from jobs.common.progress import parse_line

    return any((m := parse_line(ln)) and m.get("message") == "cached" for ln in stdout.splitlines())


def measure(items: int, latency: float) -> list[dict[str, Any]]:
    from tests.eval.openai_fake import FakeOpenAI, serve

    fake = FakeOpenAI(latency=latency)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp, serve(fake) as url:
        root = Path(tmp)
        spec = write_project(root, items, url)
        summary_path = root / "store" / "runs" / "default" / RUN / "eval" / "summary.json"
        for name, force in (("uncached", True), ("cached rerun (answer cache)", True), ("rerun (step cache)", False)):
            calls = fake.calls
            proc = run_eval(root, spec, force)
            summary = json.loads(summary_path.read_text())
            step_ran = not cache_hit(proc.stdout)
            runs.append({
                "name": name, "wall": proc.wall, "peakRss": proc.peak_rss, "calls": fake.calls - calls,
                "answering": summary["seconds"] if step_ran else None,
                "hits": summary["cache"]["hits"] if step_ran else None,
                "stepRan": step_ran,
            })
            print(f"eval_cache: {name}: {proc.wall:.2f}s, {fake.calls - calls} calls", file=sys.stderr)
    return runs


def build_section(runs: list[dict[str, Any]], items: int, latency: float) -> report.Section:
    first, cached = runs[0], runs[1]
    rows = [[
        r["name"], report.fmt_s(r["wall"]), report.fmt_s(r["answering"]) if r["answering"] is not None else "-",
        f"{r['calls']:,}", "-" if r["hits"] is None else f"{r['hits']:,}", report.fmt_mib(r["peakRss"]),
        report.fmt_x(first["wall"] / r["wall"]),
    ] for r in runs]
    speedup = first["wall"] / cached["wall"]
    answering = first["answering"] / max(cached["answering"], 1e-6)
    goals = [
        report.Goal("cached rerun vs uncached, whole step process", f">= {GOAL_SPEEDUP:.0f}x", report.fmt_x(speedup),
                    speedup >= GOAL_SPEEDUP),
        report.Goal("model calls on the cached rerun", "0", str(cached["calls"]), cached["calls"] == 0),
    ]
    meaning = (
        f"With {items:,} items at {latency} s a call and 4 calls in flight, the uncached eval is bound by the "
        f"model ({items * latency / 4:.0f} s of pure latency); the rerun asks the model nothing and spends its "
        f"time starting Python, loading the cache and checking answers, so it is {report.fmt_x(speedup)} faster "
        f"as a whole process and {report.fmt_x(answering)} faster in the answering phase alone."
    )
    return report.Section(
        title="Eval answer cache",
        columns=["run", "wall (process)", "answering phase", "model calls", "cache hits", "peak RSS", "speed-up"],
        rows=rows, meaning=meaning, goals=goals,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.eval_cache", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--latency", type=float, help="seconds per model call (default 0.5; 0.1 with --quick)")
    args = p.parse_args(argv)
    latency = args.latency if args.latency is not None else (0.1 if args.quick else 0.5)
    where = report.machine()
    runs = measure(args.items, latency)
    report.publish(build_section(runs, args.items, latency), report.command_line("bench.eval_cache", argv),
                   report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
