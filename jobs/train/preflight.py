"""Pre-flight of a distributed train step: it runs before any model loads, so that a run that
cannot train together ends in seconds with a named reason instead of hanging until the Job's
deadline.

1. The launcher (one per pod) resolves MASTER_ADDR: `MasterNotResolvable`.
2. torchrun's static rendezvous waits for every node; one that does not come: `RendezvousTimeout`.
   (rendezvousTimeoutSeconds covers 1 and 2 together.)
3. Every worker joins the process group over torchrun's store and all-reduces its rank + 1; a
   sum other than world·(world+1)/2: `CollectiveMismatch`.

The process group stays up: the Trainer (accelerate) trains over it. Its timeout is the
Trainer's usual 30 minutes, not the rendezvous timeout: rank 0 tokenizing the data or uploading
a checkpoint keeps the others waiting at a collective for longer than a rendezvous should take.
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import timedelta

from jobs.common import ranks
from jobs.common.errors import PreflightError

log = logging.getLogger(__name__)

RESOLVE_RETRY_SECONDS = 1.0
COLLECTIVE_TIMEOUT = timedelta(seconds=1800)  # TrainingArguments' ddp_timeout


def resolve_master(addr: str, timeout: float) -> str:
    """MASTER_ADDR's IP address. A headless Service's DNS name appears only once pod 0 runs, so
    this retries until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.getaddrinfo(addr, None, type=socket.SOCK_STREAM)[0][4][0]
        except (socket.gaierror, UnicodeError) as err:
            if time.monotonic() + RESOLVE_RETRY_SECONDS > deadline:
                raise PreflightError(
                    f"the master address {addr!r} (MASTER_ADDR) did not resolve within {timeout:.0f} s: {err}; "
                    "is pod 0 running, and is the headless Service named by the pods' subdomain there?",
                    code="MasterNotResolvable",
                ) from None
            time.sleep(RESOLVE_RETRY_SECONDS)


def expected_sum(world: int) -> float:
    """What the check all-reduce gives when every rank r contributes r + 1."""
    return world * (world + 1) / 2


def check_sum(got: float, world: int) -> None:
    if got != expected_sum(world):
        raise PreflightError(
            f"the pre-flight all-reduce over {world} ranks gave {got}, expected {expected_sum(world)}: "
            "the ranks do not agree on the world (mismatched nodes/procsPerNode, or a broken network path)",
            code="CollectiveMismatch",
        )


def join_and_check() -> float:
    """Join the process group (the env:// rendezvous torchrun set up) and run the check all-reduce;
    returns the seconds it took."""
    import torch
    import torch.distributed as dist

    started = time.monotonic()
    world, rank = ranks.world_size(), ranks.rank()
    device = torch.device("cpu")
    backend = "gloo"
    if torch.cuda.is_available():
        device = torch.device("cuda", ranks.local_rank())
        torch.cuda.set_device(device)
        backend = "cpu:gloo,cuda:nccl"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        except (RuntimeError, TimeoutError) as err:  # DistStoreError and friends are RuntimeErrors
            raise PreflightError(
                f"rank {rank} of {world} could not join the process group: {err}",
                code="RendezvousTimeout",
            ) from None
    probe = torch.tensor([float(rank + 1)], device=device)
    try:
        dist.all_reduce(probe)
    except RuntimeError as err:
        raise PreflightError(
            f"rank {rank} of {world}: the pre-flight all-reduce failed: {err}", code="CollectiveMismatch"
        ) from None
    check_sum(probe.item(), world)
    seconds = time.monotonic() - started
    log.info("pre-flight: rank %d of %d joined and all-reduced in %.2f s", rank, world, seconds)
    return seconds
