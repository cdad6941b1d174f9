"""ftctl controller: run the Kubernetes controller for FineTuneRuns (kopf).

Settings come from the environment (see controller/settings.py); -n overrides
FT_NAMESPACES.
"""

from __future__ import annotations

import argparse


HELP = "run the Kubernetes controller (in a cluster, or against $KUBECONFIG)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags, shared with `python -m controller` (the image's entrypoint)."""
    p.add_argument("-n", "--namespace", action="append", help="namespace to watch (repeatable; '*' for all)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("controller", help=HELP)
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from controller.operator import main

    main(namespaces=args.namespace, verbose=args.verbose)
    return 0
