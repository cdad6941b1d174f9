"""Running the train step as a pod does: `python -m jobs.train` in a subprocess, with torchrun's
launcher inside it when steps.train.distributed asks for more than one process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from tests.train.trainkit import TrainRun

from jobs.common.progress import parse_line

TRAIN = [sys.executable, "-m", "jobs.train"]


def step_env(run: TrainRun, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "JOB_COMPLETION_INDEX")}
    return {**env, **run.env, "OMP_NUM_THREADS": "1", "FT_TERMINATION_LOG": str(run.tmp / "termination-log"), **extra}


def run_step(run: TrainRun, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(TRAIN, env=step_env(run, **extra), capture_output=True, text=True, timeout=timeout)


def messages(stdout: str) -> list[dict[str, Any]]:
    return [m for m in map(parse_line, stdout.splitlines()) if m]


def losses(run: TrainRun) -> list[float]:
    return [r["loss"] for r in run.metrics() if "loss" in r]
