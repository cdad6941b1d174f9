"""The step cache as both runners (local and the controller) use it before starting a step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.common import artifacts, keys
from jobs.common.artifacts import now_iso
from jobs.common.cachekey import STEP_INPUTS, step_key
from jobs.common.spec import FineTuneRun
from jobs.common.store import Store
from jobs.pipeline.planner import Observed


def outputs_to_uris(store: Store, manifest: dict[str, Any]) -> dict[str, str]:
    prefix = keys.step_prefix(manifest["namespace"], manifest["run"], manifest["step"])
    # A cached step's files may live under the run that first produced them.
    origin = manifest.get("cachedFrom")
    if origin:
        ns, run = origin.split("/", 1)
        prefix = keys.step_prefix(ns, run, manifest["step"])
    return {name: f"{store.uri}/{prefix}/{rel}" for name, rel in manifest.get("outputs", {}).items()}


def adopt_if_cached(store: Store, run: FineTuneRun, step: str, base_dir: Path) -> Observed | None:
    """Commit a cache hit as the run's output for `step` and say so; None on a miss."""
    ns, name = run.metadata.namespace, run.metadata.name
    enabled = run.spec.steps.enabled()
    inputs = {s: artifacts.require_manifest(store, ns, name, s) for s in STEP_INPUTS[step] if s in enabled}
    key = step_key(run.spec, step, inputs, base_dir)
    hit = artifacts.lookup_cache(store, step, key)
    if hit is None:
        return None
    manifest = artifacts.adopt_cached(store, ns, name, step, hit)
    t = now_iso()
    return Observed(
        phase="Cached", started=t, finished=t, outputs=outputs_to_uris(store, manifest),
        message=f"cached (key {key[:12]})",
    )
