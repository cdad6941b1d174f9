"""ftctl: run, inspect and validate FineTuneRuns on one machine.

    ftctl init DIR          write a sample project
    ftctl validate RUN.yaml check a manifest
    ftctl estimate RUN.yaml memory per GPU of its train step
    ftctl run RUN.yaml      run the enabled steps locally
    ftctl status RUN        what ran, where the outputs are, timings
    ftctl serve             the OpenAI-compatible fine-tuning API
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jobs.common.errors import FtError

# Each module has register(subparsers) and sets `func` on its parser.
COMMANDS = [
    "jobs.cli.cmd_init",
    "jobs.cli.cmd_validate",
    "jobs.cli.cmd_estimate",
    "jobs.cli.cmd_validate_data",
    "jobs.cli.cmd_run",
    "jobs.cli.cmd_status",
    "jobs.cli.cmd_rerun",
    "jobs.cli.cmd_chat",
    "jobs.cli.cmd_controller",
    "jobs.cli.cmd_cancel",
    "jobs.cli.cmd_serve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftctl", description="Fine-tune LLMs: one spec, locally or on Kubernetes.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except FtError as err:
        print(f"error: {err.message}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
