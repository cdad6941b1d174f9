"""The step cache key: hash(step config, what it reads, the step's code version).

What a step reads is the committed manifests of the steps before it, plus the
external files its spec names (data, eval items, the base model). Both the
controller and `ftctl run` compute this key before starting a step, and the step
records it in its manifest, so a hit is found without starting anything.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from jobs.common.codeclosure import ROOT, closure
from jobs.common.spec import FineTuneRunSpec

# Which earlier steps each step reads (when they are enabled).
STEP_INPUTS: dict[str, tuple[str, ...]] = {
    "eval": (),
    "pack": ("eval",),
    "train": ("pack",),
    "evaluate": ("pack", "train"),
    "gguf": ("pack", "train", "evaluate"),  # evaluate: the base and tuned scores the quantizations are set beside
}
# Whether the step's output depends on the base model.
USES_MODEL = {"eval", "train", "evaluate", "gguf"}
# Past this size a local file is fingerprinted by size and mtime instead of content.
HASH_LIMIT = 512 * 1024 * 1024


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@functools.lru_cache(maxsize=16)
def code_version(step: str) -> str:
    """sha256 over the files the step runs: its own and every jobs module it imports."""
    h = hashlib.sha256()
    for p in closure(step):
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=256)
def _local_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    if size > HASH_LIMIT:
        return f"size={size},mtime={mtime_ns}"
    from jobs.common.artifacts import sha256_file

    return sha256_file(Path(path))


def _s3_fingerprint(uri: str) -> str:
    """The ETags and sizes of the object (or of the objects of a model folder): overwriting
    any of them changes the key."""
    from urllib.parse import urlsplit

    from jobs.common.store import S3Store

    parts = urlsplit(uri)
    versions = S3Store(parts.netloc).versions(parts.path.strip("/"))
    return _digest(versions) if versions else f"missing:{uri}"


def fingerprint(location: str, base_dir: Path) -> str:
    """A stable identity for an external input; changes when its content changes."""
    from jobs.common.resolve import local_path_of

    if location.startswith("s3://"):
        return _s3_fingerprint(location)
    path = local_path_of(location, base_dir)
    if path is None:
        return f"ref:{location}"
    if path.is_dir():
        entries = []
        for p in sorted(path.rglob("*")):
            if p.is_file():
                st = p.stat()
                entries.append([p.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns])
        return _digest(entries)
    if not path.exists():
        return f"missing:{path}"
    st = path.stat()
    return _local_fingerprint(str(path), st.st_size, st.st_mtime_ns)


def external_inputs(spec: FineTuneRunSpec, step: str) -> list[str]:
    """The files and URIs named by the spec that `step` reads."""
    out: list[str] = []
    if step in USES_MODEL and spec.model.kind in ("hf", "gguf"):
        out.append(spec.model.location)
    if step == "pack" and spec.data:
        out += [s.path for s in spec.data.sources if s.path]
    if step == "eval" and spec.steps.eval:
        cfg = spec.steps.eval
        out += [p for p in (cfg.items, cfg.synonyms, cfg.synonyms_override, cfg.backend.gguf) if p]
    return out


def step_key(
    spec: FineTuneRunSpec,
    step: str,
    input_manifests: dict[str, dict[str, Any]],
    base_dir: Path,
) -> str:
    config = getattr(spec.steps, step).model_dump(mode="json", by_alias=True)
    enabled = spec.steps.enabled()
    material = {
        "step": step,
        "config": config,
        "code": code_version(step),
        "model": spec.model.model_dump(mode="json", exclude={"name"}) if step in USES_MODEL else None,
        "data": spec.data.model_dump(mode="json") if (step == "pack" and spec.data) else None,
        "external": {loc: fingerprint(loc, base_dir) for loc in external_inputs(spec, step)},
        "inputs": {
            s: _digest(input_manifests[s]["files"]) for s in STEP_INPUTS[step] if s in enabled
        },
        "env": os.environ.get("FT_CACHE_SALT", ""),
    }
    return _digest(material)
