"""Where ftctl keeps artifacts when neither the spec nor the environment says."""

from __future__ import annotations

import os
from pathlib import Path

from jobs.common.spec import FineTuneRun


def store_uri(run: FineTuneRun | None = None, override: str | None = None) -> str:
    """--store (a URI or a plain path), then FT_STORE_URI, then spec.store.uri, then ./ft-store."""
    if override and "://" not in override:
        override = Path(override).resolve().as_uri()
    return (
        override
        or os.environ.get("FT_STORE_URI")
        or (run.spec.store.uri if run else None)
        or (Path.cwd() / "ft-store").resolve().as_uri()
    )
