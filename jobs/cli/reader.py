"""The read side of a run for commands that use its outputs and base model (chat, rerun)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def reader_context(ftr: Any, store: Any, base_dir: Path, purpose: str) -> Any:
    """Reads committed outputs and the base model; downloads go to .ft-work/<run>/<purpose>,
    which is kept, so the next command downloads nothing."""
    from jobs.common.stepctx import RunReader

    return RunReader(ftr, store, base_dir, (Path(".ft-work") / ftr.metadata.name / purpose).resolve())
