"""Preemption (node drain, Kueue preemption, spot reclaim): on SIGTERM the train step saves a
checkpoint to the store at the end of the current optimizer step and exits EXIT_PREEMPTED, so
that the Job's next pod resumes from it and repeats no step.

Every worker of a distributed step gets the signal (torchrun forwards it), but not at the same
step; at each step end the workers agree by an all-reduce (MAX) of their flags, so that all of
them save the same step and stop together.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from transformers import TrainerCallback

from jobs.common import ranks

log = logging.getLogger(__name__)


class Preemption(TrainerCallback):
    def __init__(self) -> None:
        self.signalled = False
        self.at_step: int | None = None  # the step saved on the way out

    def install(self) -> Preemption:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        log.warning("SIGTERM: saving a checkpoint at the end of this step, then stopping")
        self.signalled = True

    def _anyone_signalled(self) -> bool:
        if ranks.world_size() == 1:
            return self.signalled
        import torch
        import torch.distributed as dist

        flag = torch.tensor([int(self.signalled)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # a CPU tensor: gloo, also beside NCCL
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self.at_step is None and state.global_step < state.max_steps and self._anyone_signalled():
            self.at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def stopped_early(self, state: Any) -> bool:
        return self.at_step is not None and state.global_step < state.max_steps
