"""ftctl status RUN: what ran, where the outputs are, per-step timings."""

from __future__ import annotations

import argparse

from rich.console import Console

from jobs.cli.local_store import store_uri
from jobs.cli.report import print_summary
from jobs.common.store import open_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show a local run's status and outputs")
    p.add_argument("run")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--store", help="store URI or path (default: FT_STORE_URI or ./ft-store)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    status = print_summary(Console(), open_store(store_uri(None, args.store)), args.namespace, args.run)
    return 0 if status["phase"] in ("Succeeded", "Running", "Pending") else 1
