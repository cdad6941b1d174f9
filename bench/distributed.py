"""Distributed training on one CPU machine: the train step with 1 process against 2 (DDP over
gloo, launched by the step through torchrun's launcher), the same global batch and steps.

    python -m bench.distributed            # 6 optimizer steps each
    python -m bench.distributed --quick    # 3 optimizer steps each

SmolLM2-135M-Instruct (dequantized from the packaged GGUF), LoRA r 16, the train_throughput
benchmark's chat rows packed into 256-token rows. Each side is `python -m jobs.train` as a pod
runs it; the figures come from the step's manifest (tokens/s, each rank's peak RSS) and its
"pre-flight passed" event (join the process group and check one all-reduce). On a machine with
fewer cores than processes the 2-process side shares them: the figure to read here is the
memory per process and the pre-flight cost, not a speed-up.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import yaml

from bench import report
from bench.train_throughput import GGUF, MAX_LENGTH, RUN, make_rows, write_project

GLOBAL_BATCH = 4
SIDES = {"1 process": 1, "2 processes (DDP, gloo)": 2}
GOAL_PREFLIGHT_SECONDS = 5.0


def _spec_for(spec: Path, procs: int) -> Path:
    doc = yaml.safe_load(spec.read_text())
    train = doc["spec"]["steps"]["train"]
    train.update(batchSize=GLOBAL_BATCH // procs, distributed={"procsPerNode": procs, "strategy": "ddp"})
    out = spec.with_name(f"run-{procs}.yaml")
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _side(env: dict[str, str], spec: Path, root: Path, procs: int) -> dict[str, Any]:
    import json
    import os

    from jobs.common.artifacts import read_tree
    from jobs.common.progress import parse_line
    from jobs.common.store import open_store

    threads = str(max(1, (os.cpu_count() or 1) // procs))  # the same cores in all, however many processes
    env = {**env, "FT_SPEC_FILE": str(spec), "FT_SCRATCH": str(root / f"scratch-{procs}"), "OMP_NUM_THREADS": threads}
    proc = report.run_python("jobs.train", env=env, timeout=4 * 3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{procs} process(es) failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    metrics = read_tree(open_store(env["FT_STORE_URI"]), f"runs/default/{RUN}/train")["metrics"]
    events = [m for m in map(parse_line, proc.stdout.splitlines()) if m and m.get("message") == "pre-flight passed"]
    print(f"distributed: {procs} process(es): {proc.wall:.0f}s {json.dumps(metrics)}", file=sys.stderr)
    return {"metrics": metrics, "wall": proc.wall, "preflight": events[0]["seconds"] if events else None}


def measure(steps: int, rows: int, model_dir: Path | None = None) -> dict[str, Any]:
    """`model_dir`: an HF model folder instead of SmolLM2 (the smoke test's tiny model)."""
    with tempfile.TemporaryDirectory(prefix="bench-dist-") as tmp:
        root = Path(tmp)
        model = {"hf": str(model_dir), "name": model_dir.name} if model_dir else {"gguf": GGUF, "name": "SmolLM2-135M-Instruct"}
        spec = write_project(root, make_rows(rows), steps, model)
        env = report.python_env({"FT_STORE_URI": (root / "store").as_uri(), "FT_BASE_DIR": str(root), "FT_FORCE": "1",
                                 "FT_SPEC_FILE": str(spec)})
        pack = report.run_python("jobs.pack", env=env, timeout=3600)
        if pack.returncode != 0:
            raise RuntimeError(f"pack failed:\n{pack.stderr[-4000:]}")
        results = {name: _side(env, _spec_for(spec, procs), root, procs) for name, procs in SIDES.items()}
    return {"results": results, "steps": steps}


def build_section(m: dict[str, Any]) -> report.Section:
    r = m["results"]
    rows = []
    for name, x in r.items():
        metrics = x["metrics"]
        rss = metrics["peakRssMiBPerRank"]
        rows.append([
            name, metrics["steps"], f"{metrics['trainTokens']:,}", report.fmt_s(metrics["trainSeconds"]),
            f"{metrics['trainTokensPerSec']:.0f}", " / ".join(f"{v:.0f} MiB" for v in rss),
            report.fmt_s(x["preflight"]) if x["preflight"] is not None else "none (one process)",
            report.fmt_s(x["wall"]),
        ])
    one, two = (x["metrics"] for x in r.values())
    preflight = next(x["preflight"] for x in r.values() if x["preflight"] is not None)
    meaning = (
        f"Two processes train at {two['trainTokensPerSec'] / one['trainTokensPerSec']:.2f}x the tokens/s of one on "
        f"this machine, each holding {max(two['peakRssMiBPerRank']):.0f} MiB at peak against "
        f"{one['peakRssMiBPerRank'][0]:.0f} MiB for the single process (DDP keeps a full replica per process). "
        f"Pre-flight (join the process group, one checked all-reduce) took {report.fmt_s(preflight)}."
    )
    return report.Section(
        title="Distributed training (DDP on CPU, 1 vs 2 processes)",
        columns=["side", "steps", "tokens", "train time", "tokens/s", "peak RSS per rank", "pre-flight", "step wall time"],
        rows=rows,
        meaning=meaning,
        goals=[report.Goal("pre-flight of 2 processes on one machine", f"<= {GOAL_PREFLIGHT_SECONDS:.0f} s",
                           report.fmt_s(preflight), preflight <= GOAL_PREFLIGHT_SECONDS)],
        notes=[f"Global batch {GLOBAL_BATCH} (per-process batch {GLOBAL_BATCH} and {GLOBAL_BATCH // 2}), maxLength "
               f"{MAX_LENGTH}, LoRA r 16, {m['steps']} optimizer steps per side, OMP_NUM_THREADS = cores / processes. "
               "CPU only: no GPU here, so FSDP (which accelerate shards across GPUs only) is not measured."],
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.distributed", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--steps", type=int, help="optimizer steps per side (default 6; 3 with --quick)")
    p.add_argument("--rows", type=int, default=300, help="rows in the generated chat set")
    p.add_argument("--model-dir", type=Path, help="an HF model folder to train instead of SmolLM2 (smoke runs)")
    args = p.parse_args(argv)
    steps = args.steps or (3 if args.quick else 6)
    where = report.machine()
    m = measure(steps, args.rows, args.model_dir)
    report.publish(build_section(m), report.command_line("bench.distributed", argv), report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
