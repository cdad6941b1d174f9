"""Which worker this process is, from the environment torchrun gives its workers.

A step started without torchrun is rank 0 of a world of 1. Only rank 0 writes to the store
(outputs, manifest, checkpoints, progress); the others compute and read.
"""

from __future__ import annotations

import os


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def is_worker() -> bool:
    """True in a process that torchrun started (it sets TORCHELASTIC_RUN_ID for its workers)."""
    return "TORCHELASTIC_RUN_ID" in os.environ
