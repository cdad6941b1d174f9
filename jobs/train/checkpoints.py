"""Training checkpoints in the store, so that a restarted train step resumes instead of starting over.

Every `checkpointEvery` steps the Trainer saves a checkpoint folder (adapter or model, optimizer,
scheduler, RNG and trainer state). `CheckpointCallback` uploads it to
runs/<ns>/<run>/train/checkpoints/checkpoint-<step>/ and commits it with its own manifest, written
last. A restart restores the newest committed checkpoint whose files all verify; a corrupt one is
logged and the previous good one is used instead. Once the trained weights are uploaded, the
checkpoints are deleted: they exist only while a training is unfinished.

A checkpoint belongs to one configuration: its manifest carries the step's input key (spec, data
and code), and only checkpoints with the current key are resumed from.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from jobs.common import artifacts, keys
from jobs.common.errors import IntegrityError
from jobs.common.progress import Progress
from jobs.common.store import Store
from jobs.common.tracking import MetricsLog
from jobs.train.preemption import Preemption

log = logging.getLogger(__name__)

FOLDER = "checkpoints"
KEEP = 2  # the newest and one to fall back on
METRICS_COPY = "ft_metrics.jsonl"  # the metrics so far travel inside the checkpoint
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(folder: Path) -> int:
    """The global step of a checkpoint-<step> folder."""
    return int(_NAME.match(folder.name).group(1))


def _relocate_best(local: Path) -> None:
    """The trainer state names the best checkpoint by the absolute path it had in the pod that
    saved it; point it at this restored copy so that the best model can still be loaded."""
    state_file = local / "trainer_state.json"
    state = json.loads(state_file.read_text())
    best = state.get("best_model_checkpoint")
    if best and Path(best).name == local.name and best != str(local):
        state["best_model_checkpoint"] = str(local)
        state_file.write_text(json.dumps(state, indent=2))


class CheckpointStore:
    def __init__(self, store: Store, step_prefix: str, input_key: str, progress: Progress):
        self.store = store
        self.prefix = keys.join(step_prefix, FOLDER)
        self.input_key = input_key
        self.progress = progress
        self.restored: dict[str, Any] | None = None  # the manifest of the checkpoint restore() returned

    def _key_prefix(self, step: int) -> str:
        return keys.join(self.prefix, f"checkpoint-{step}")

    def committed(self) -> list[tuple[int, dict[str, Any] | None]]:
        """(step, manifest) of every committed checkpoint, newest first; manifest None if unreadable."""
        found = []
        for key in self.store.list(self.prefix):
            parts = key[len(self.prefix) + 1 :].split("/")
            if len(parts) == 2 and parts[1] == artifacts.MANIFEST and (m := _NAME.match(parts[0])):
                raw = self.store.get_bytes(key)
                try:
                    found.append((int(m.group(1)), json.loads(raw) if raw else None))
                except json.JSONDecodeError:
                    found.append((int(m.group(1)), None))
        return sorted(found, key=lambda item: item[0], reverse=True)

    def _ours(self) -> list[tuple[int, dict[str, Any] | None]]:
        return [(s, m) for s, m in self.committed() if m is None or m.get("inputKey") == self.input_key]

    def restore(self, dest_root: Path) -> Path | None:
        """Download the newest good checkpoint into dest_root/checkpoint-<step>; None when there is none."""
        skipped: list[int] = []
        for step, manifest in self._ours():
            local = dest_root / f"checkpoint-{step}"
            problem = self._problem(manifest, local)
            if problem is None:
                self.restored = manifest
                _relocate_best(local)
                if skipped:
                    message = f"resuming from checkpoint-{step}, the previous good checkpoint"
                    log.warning(message)
                    self.progress.event(message, resumedFrom=step, skipped=skipped)
                else:
                    log.info("resuming from checkpoint-%d", step)
                return local
            shutil.rmtree(local, ignore_errors=True)
            skipped.append(step)
            message = f"checkpoint-{step} is corrupt ({problem}); falling back to an earlier one"
            log.warning(message)
            self.progress.event(message, checkpoint=step)
        if skipped:
            log.warning("no good checkpoint left (skipped %s); training starts from step 0", skipped)
        return None

    def _problem(self, manifest: dict[str, Any] | None, local: Path) -> str | None:
        if manifest is None:
            return "unreadable manifest"
        for entry in manifest["files"]:
            if self.store.size(entry["key"]) != entry["size"]:
                return f"{entry['path']} is missing or has the wrong size"
        try:
            artifacts.fetch(self.store, manifest, local)
        except IntegrityError as err:
            return str(err)
        return None

    def commit(self, local: Path, step: int, preempted: bool = False) -> None:
        """`preempted`: saved on SIGTERM; the manifest says so, and the resumed step's status too."""
        meta = {"step": "train", "kind": "checkpoint", "globalStep": step, "inputKey": self.input_key}
        artifacts.commit_tree(
            self.store, self._key_prefix(step), local, {**meta, **({"preemptedAt": step} if preempted else {})}
        )
        self._prune(keep_from=step)

    def clear(self) -> None:
        """Drop every checkpoint: called once the trained weights are uploaded as the step's output."""
        for step, _ in self.committed():
            artifacts.delete_tree(self.store, self._key_prefix(step))
        for key in self.store.list(self.prefix):  # uploads cut off before their manifest
            self.store.delete(key)

    def _prune(self, keep_from: int) -> None:
        """Keep the newest KEEP checkpoints of this configuration; drop the rest and any stale ones."""
        kept = 0
        for step, manifest in self.committed():
            ours = manifest is not None and manifest.get("inputKey") == self.input_key
            if ours and step <= keep_from and kept < KEEP:
                kept += 1
                continue
            artifacts.delete_tree(self.store, self._key_prefix(step))


class CheckpointCallback(TrainerCallback):
    """Uploads each checkpoint the Trainer saves, with the metrics logged so far (rank 0: in a
    distributed step the model and optimizer are gathered to it, see Session.trainer_args)."""

    def __init__(self, checkpoints: CheckpointStore, metrics: MetricsLog, preemption: Preemption):
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.preemption = preemption

    def on_save(self, args, state, control, **kwargs):
        # The final state is committed as the step's output right after; a checkpoint of it would
        # only let a restart "resume" a finished training.
        if state.global_step >= state.max_steps:
            return control
        local = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and local.is_dir():
            if self.metrics.path.exists():
                shutil.copyfile(self.metrics.path, local / METRICS_COPY)
            preempted = self.preemption.at_step == state.global_step
            self.checkpoints.commit(local, state.global_step, preempted=preempted)
            self.checkpoints.progress.event("checkpoint", globalStep=state.global_step)
            if preempted:
                self.checkpoints.progress.update(
                    state.global_step, state.max_steps, preemptedAt=state.global_step, flush=True
                )
        return control
