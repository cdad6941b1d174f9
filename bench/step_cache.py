"""Step cache: `ftctl run` twice on the quickstart; the second run should execute nothing.

    python -m bench.step_cache            # examples/quickstart.yaml, all steps (trains: long)
    python -m bench.step_cache --quick    # the quickstart with only its pack step

The example and its data are copied into a fresh folder with an empty file:// store; both
runs are `ftctl run` as a user types it, each measured as its own process (children
included).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import yaml

from bench import report

EXAMPLE = report.REPO / "examples" / "quickstart.yaml"
GOAL_SECONDS = 5.0
_EXECUTED = re.compile(r"steps executed: (.*?); wall time")


def write_project(root: Path, pack_only: bool) -> Path:
    shutil.copytree(EXAMPLE.parent / "data", root / "data")
    spec = yaml.safe_load(EXAMPLE.read_text())
    if pack_only:
        spec["spec"]["steps"] = {"pack": spec["spec"]["steps"]["pack"]}
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def executed_steps(stdout: str) -> list[str]:
    """The steps `ftctl run` says it executed (it prints 'steps executed: a, b; wall time ...')."""
    found = _EXECUTED.search(stdout)
    if not found:
        raise RuntimeError(f"ftctl run printed no 'steps executed' line:\n{stdout[-2000:]}")
    names = found.group(1).strip()
    return [] if names == "none" else [s.strip() for s in names.split(",")]


def ftctl_run(root: Path, spec: Path) -> report.Child:
    proc = report.run_python(
        "jobs.cli.main", "run", str(spec), "--store", (root / "store").as_uri(), "--work-dir", str(root / "work"),
        cwd=root, timeout=3 * 3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ftctl run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return proc


def measure(pack_only: bool) -> list[dict[str, Any]]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-step-cache-") as tmp:
        root = Path(tmp)
        spec = write_project(root, pack_only)
        for name in ("first run", "second run"):
            proc = ftctl_run(root, spec)
            runs.append({"name": name, "wall": proc.wall, "peakRss": proc.peak_rss, "cpu": proc.cpu,
                         "executed": executed_steps(proc.stdout)})
            print(f"step_cache: {name}: {proc.wall:.1f}s, executed {runs[-1]['executed']}", file=sys.stderr)
    return runs


def build_section(runs: list[dict[str, Any]], pack_only: bool) -> report.Section:
    first, second = runs
    rows = [[r["name"], report.fmt_s(r["wall"]), report.fmt_s(r["cpu"]), report.fmt_mib(r["peakRss"]),
             ", ".join(r["executed"]) or "none"] for r in runs]
    what = "the quickstart's pack step alone" if pack_only else "the whole quickstart (pack, train, evaluate, gguf)"
    goals = [
        report.Goal("second run wall time", f"<= {GOAL_SECONDS:.0f} s", report.fmt_s(second["wall"]),
                    second["wall"] <= GOAL_SECONDS),
        report.Goal("steps executed by the second run", "0", str(len(second["executed"])), not second["executed"]),
    ]
    meaning = (
        f"On {what}, the second `ftctl run` finds every step's key committed in the store and executes none: "
        f"{report.fmt_s(second['wall'])} instead of {report.fmt_s(first['wall'])} "
        f"({report.fmt_x(first['wall'] / second['wall'])}), the time being Python start-up, reading the spec "
        f"and hashing the inputs that make up each step's key."
    )
    return report.Section(
        title="Step cache (ftctl run twice)" + (" - pack only" if pack_only else ""),
        columns=["run", "wall", "CPU", "peak RSS", "steps executed"],
        rows=rows, meaning=meaning, goals=goals,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.step_cache", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    args = p.parse_args(argv)
    where = report.machine()
    runs = measure(pack_only=args.quick)
    report.publish(build_section(runs, args.quick), report.command_line("bench.step_cache", argv),
                   report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
