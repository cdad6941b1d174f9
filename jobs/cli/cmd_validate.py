"""ftctl validate RUN.yaml...: check manifests against the spec; name each bad field."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.cli.cmd_estimate import fit_warning
from jobs.common.errors import InvalidSpec
from jobs.common.specio import load_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="validate FineTuneRun manifests")
    p.add_argument(
        "files", nargs="+", metavar="FILE|FIELD=VALUE",
        help="manifests, and spec overrides applied to each (e.g. steps.train.learningRate=1e-4)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    bad = 0
    given = [str(a) for a in args.files]
    overrides = [a for a in given if "=" in a and not Path(a).exists()]
    for path in (Path(a) for a in given if a not in overrides):
        try:
            ftr = load_run(path, overrides=overrides)
        except InvalidSpec as err:
            bad += 1
            print(f"{path}: invalid", file=sys.stderr)
            for line in err.message.splitlines():
                print(f"  {line}", file=sys.stderr)
            continue
        steps = ", ".join(ftr.spec.steps.enabled())
        print(f"{path}: ok ({ftr.metadata.namespace}/{ftr.metadata.name}; steps: {steps})")
        warning = fit_warning(ftr, path.parent)
        if warning:
            print(f"{path}: warning: {warning}", file=sys.stderr)
    return 2 if bad else 0
