"""A read-only StepContext for commands that use a run's outputs and base model (chat, rerun)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def reader_context(ftr: Any, store: Any, base_dir: Path, purpose: str) -> Any:
    """Reads committed outputs and the base model; downloads go to .ft-work/<run>/<purpose>,
    which is kept, so the next command downloads nothing."""
    from jobs.common.artifacts import StepWriter
    from jobs.common.progress import Progress
    from jobs.common.stepctx import StepContext

    ns, name = ftr.metadata.namespace, ftr.metadata.name
    scratch = (Path(".ft-work") / name / purpose).resolve()
    return StepContext(purpose, ftr, store, base_dir, scratch, StepWriter(store, ns, name, purpose), Progress(purpose), {})
