"""Every benchmark, one after the other (`make bench` runs `python -m bench.all --quick`).

    python -m bench.all [--quick] [--doc FILE | --no-doc] [--only dedupe,store]

A benchmark that fails is reported and the others still run; the exit status says
whether all of them completed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from typing import Sequence

from bench import report

BENCHMARKS = ("dedupe", "pack_scale", "train_throughput", "distributed", "grpo_step", "quant_scoring", "controller_scale",
              "eval_cache", "step_cache", "store")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--only", type=lambda s: s.split(","), default=list(BENCHMARKS),
                   help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    args = p.parse_args(argv)
    unknown = sorted(set(args.only) - set(BENCHMARKS))
    if unknown:
        p.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    shared = (["--quick"] if args.quick else []) + (["--no-doc"] if args.no_doc else ["--doc", str(args.doc)])
    failed = []
    for name in (b for b in BENCHMARKS if b in args.only):
        print(f"\n=== bench.{name} ===", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main(shared)
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
