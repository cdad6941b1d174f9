"""Start a distributed train step's workers with torch's own launcher (torchrun's
`torch.distributed.run`, static rendezvous), one launcher per pod.

In a pod (MASTER_ADDR set): `nodes` pods of an Indexed Job, node rank = JOB_COMPLETION_INDEX,
`procsPerNode` workers each. On one machine (`ftctl run`, no MASTER_ADDR): all nodes x procsPerNode
workers on 127.0.0.1 with a free port. Each worker is `python -m jobs.train` again, which sees
torchrun's RANK/WORLD_SIZE and trains (jobs.train.run); only rank 0 writes to the store.

Exit codes: a worker's own (its error line is already printed), EXIT_PREEMPTED after SIGTERM
(the workers saved a checkpoint first: the launcher waits for them), or a pre-flight error.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from dataclasses import dataclass

from jobs.common.errors import EXIT_CRASH, EXIT_PREEMPTED, PreflightError
from jobs.common.spec import Distributed
from jobs.train.preflight import resolve_master

log = logging.getLogger(__name__)

# Workers get this long to save a checkpoint after SIGTERM; the kubelet's grace period is the real limit.
SHUTDOWN_SECONDS = 3600


@dataclass(frozen=True)
class LaunchPlan:
    nnodes: int
    node_rank: int
    nproc_per_node: int
    master_addr: str
    master_port: int
    rendezvous_timeout: int

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def plan_launch(dist: Distributed, env: dict[str, str]) -> LaunchPlan:
    """Where this launcher stands in the run, from the spec and the pod's environment."""
    if "MASTER_ADDR" not in env:  # one machine runs every node's workers
        return LaunchPlan(1, 0, dist.nodes * dist.procs_per_node, "127.0.0.1", free_port(), dist.rendezvous_timeout_seconds)
    node_rank = int(env.get("JOB_COMPLETION_INDEX", "0"))
    if not 0 <= node_rank < dist.nodes:
        raise PreflightError(
            f"JOB_COMPLETION_INDEX={node_rank} is not a node of steps.train.distributed.nodes={dist.nodes}",
            code="RendezvousMismatch",
        )
    port = int(env.get("MASTER_PORT") or dist.port)
    return LaunchPlan(dist.nodes, node_rank, dist.procs_per_node, env["MASTER_ADDR"], port, dist.rendezvous_timeout_seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_argv(plan: LaunchPlan, master_ip: str) -> list[str]:
    return [
        f"--nnodes={plan.nnodes}",
        f"--node-rank={plan.node_rank}",
        f"--nproc-per-node={plan.nproc_per_node}",
        "--rdzv-backend=static",
        f"--master-addr={master_ip}",
        f"--master-port={plan.master_port}",
        f"--rdzv-conf=timeout={plan.rendezvous_timeout}",
        "--max-restarts=0",  # a failed worker fails the attempt; the Job's retry resumes from a checkpoint
        f"--shutdown-timeout={SHUTDOWN_SECONDS}",
        "--module",
        "jobs.train",
    ]


def launch(dist: Distributed) -> int:
    """Run this node's workers to the end; returns the exit code the pod should end with."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args

    plan = plan_launch(dist, dict(os.environ))
    master_ip = resolve_master(plan.master_addr, plan.rendezvous_timeout)
    config, cmd, cmd_args = config_from_args(parse_args(torchrun_argv(plan, master_ip)))
    log.info(
        "node %d of %d: %d worker(s), rendezvous at %s:%d", plan.node_rank, plan.nnodes, plan.nproc_per_node,
        master_ip, plan.master_port,
    )
    try:
        elastic_launch(config, cmd)(*cmd_args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        log.error("worker rank %d failed with exit code %d", rank, failure.exitcode)
        return failure.exitcode if failure.exitcode > 0 else EXIT_CRASH
    except SignalException as err:
        if err.sigval == signal.SIGTERM:
            log.warning("SIGTERM: the workers saved a checkpoint and stopped")
            return EXIT_PREEMPTED
        raise
    except Exception as err:  # the static rendezvous: the master's store or a peer never came
        if "timed out" in str(err).lower() or "timeout" in type(err).__name__.lower():
            raise PreflightError(
                f"node {plan.node_rank} of {plan.nnodes}: not every node joined the rendezvous at "
                f"{plan.master_addr}:{plan.master_port} within {plan.rendezvous_timeout} s ({type(err).__name__}: {err})",
                code="RendezvousTimeout",
            ) from None
        raise
    return 0
