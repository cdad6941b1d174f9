"""ftctl cancel RUN -n NS: stop a FineTuneRun in a cluster (sets spec.suspend: true).

The controller deletes the running step's Job and marks the run Cancelled.
`--resume` sets spec.suspend back to false: the run goes on from the step that had
not finished, and finished steps are not run again.
"""

from __future__ import annotations

import argparse

from jobs.common.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cancel", help="stop a run in the cluster (spec.suspend: true); --resume undoes it")
    p.add_argument("run")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--resume", action="store_true", help="set spec.suspend: false to resume the run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException

    from controller.kube import Kube, load_config

    try:
        load_config()
    except ConfigException as err:
        raise InvalidInput(f"no cluster to talk to (in-cluster config or $KUBECONFIG): {err}") from None
    try:
        Kube(pool_size=1).set_run_suspend(args.namespace, args.run, not args.resume)
    except ApiException as err:
        if err.status == 404:
            raise InvalidInput(f"FineTuneRun {args.namespace}/{args.run} not found") from None
        raise
    print(f"finetunerun {args.namespace}/{args.run} {'resumed' if args.resume else 'cancelled'}")
    return 0
