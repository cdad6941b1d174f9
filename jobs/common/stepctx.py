"""What every step program shares: read the spec, open the store, check the cache,
run the step's body, commit its output, map errors to exit codes.

A step is started the same way in a pod and by `ftctl run`:

    FT_SPEC_FILE=spec.json FT_STORE_URI=file:///tmp/store python -m jobs.<step>

Environment:
    FT_SPEC_FILE / FT_SPEC   the FineTuneRun (file path, or the JSON itself)
    FT_STORE_URI             overrides spec.store.uri
    FT_BASE_DIR              folder that relative paths in the spec are resolved against
    FT_SCRATCH               working folder (default: a fresh temporary folder)
    FT_PROGRESS_TO_STORE     "1" in a cluster: also write progress.json to the store
    FT_FORCE                 "1": ignore the step cache
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from jobs.common import artifacts, keys, ranks
from jobs.common.cachekey import STEP_INPUTS, code_version, step_key
from jobs.common.errors import EXIT_CRASH, FtError, InvalidSpec
from jobs.common.progress import Progress, emit, write_termination_message
from jobs.common.resolve import materialize
from jobs.common.spec import FineTuneRun
from jobs.common.specio import load_run
from jobs.common.store import Store, open_store

log = logging.getLogger("ft.step")


@dataclass
class StepResult:
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # name -> path in the step's output
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunReader:
    """The read side of a run: its spec and store, the committed outputs of its steps, and local
    folders. What every step reads, and all that `ftctl chat` and `ftctl rerun` need."""

    run: FineTuneRun
    store: Store
    base_dir: Path  # relative paths in the spec are resolved against it
    scratch: Path  # downloads and working files
    input_manifests: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def spec(self):
        return self.run.spec

    @property
    def namespace(self) -> str:
        return self.run.metadata.namespace

    @property
    def name(self) -> str:
        return self.run.metadata.name

    def input_dir(self, step: str, only: str | None = None) -> Path:
        """The verified, local copy of an earlier step's committed output."""
        return artifacts.fetch(self.store, self.input_manifest(step), self.scratch / "inputs" / step, only=only)

    def input_manifest(self, step: str) -> dict[str, Any]:
        return self.input_manifests.get(step) or artifacts.require_manifest(
            self.store, self.namespace, self.name, step
        )

    def resolve(self, location: str) -> Path:
        return materialize(location, self.base_dir, self.scratch)


@dataclass(kw_only=True)
class StepContext(RunReader):
    """The write side, for the step that runs: its config, its output folder and writer, progress."""

    step: str
    writer: artifacts.StepWriter
    progress: Progress

    @property
    def config(self):
        return getattr(self.run.spec.steps, self.step)

    @property
    def out(self) -> Path:
        """Local folder for this step's outputs before they are uploaded."""
        path = self.scratch / "out"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def upload_outputs(self) -> None:
        self.writer.add_dir("", self.out)


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("FT_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def load_spec() -> FineTuneRun:
    if path := os.environ.get("FT_SPEC_FILE"):
        return load_run(Path(path))
    if text := os.environ.get("FT_SPEC"):
        return load_run(None, text=text)
    raise InvalidSpec("no spec: set FT_SPEC_FILE or FT_SPEC")


def build_context(step: str) -> StepContext:
    run = load_spec()
    if getattr(run.spec.steps, step) is None:
        raise InvalidSpec(f"spec.steps.{step}: this step is not enabled in the spec")
    uri = os.environ.get("FT_STORE_URI") or run.spec.store.uri
    if not uri:
        raise InvalidSpec("spec.store.uri: no store (set it or FT_STORE_URI)")
    store = open_store(uri)
    base_dir = Path(os.environ.get("FT_BASE_DIR", os.getcwd()))
    scratch = Path(os.environ.get("FT_SCRATCH") or tempfile.mkdtemp(prefix=f"ft-{step}-"))
    if ranks.world_size() > 1:  # the workers of one pod share its scratch volume
        scratch = scratch / f"rank-{ranks.rank()}"
    scratch.mkdir(parents=True, exist_ok=True)
    ns, name = run.metadata.namespace, run.metadata.name
    sink = None
    if os.environ.get("FT_PROGRESS_TO_STORE") == "1" and ranks.is_main():
        progress_key = keys.join(keys.step_prefix(ns, name, step), "progress.json")
        sink = lambda msg: store.put_bytes(progress_key, json.dumps(msg).encode())  # noqa: E731
    enabled = run.spec.steps.enabled()
    inputs = {
        s: artifacts.require_manifest(store, ns, name, s) for s in STEP_INPUTS[step] if s in enabled
    }
    return StepContext(
        step=step,
        run=run,
        store=store,
        base_dir=base_dir,
        scratch=scratch,
        writer=artifacts.StepWriter(store, ns, name, step),
        progress=Progress(step, sink=sink, quiet=not ranks.is_main()),
        input_manifests=inputs,
    )


def execute(step: str, body: Callable[[StepContext], StepResult]) -> dict[str, Any]:
    """Run one step to a committed manifest (or a cache hit). Raises FtError on failure.

    In a distributed step every worker runs the body; only rank 0 writes the manifest."""
    ctx = build_context(step)
    key = step_key(ctx.spec, step, ctx.input_manifests, ctx.base_dir)
    writes = ranks.is_main()
    if os.environ.get("FT_FORCE") != "1":
        cached = artifacts.lookup_cache(ctx.store, step, key)
        if cached is not None:
            if not writes:
                return cached
            manifest = artifacts.adopt_cached(ctx.store, ctx.namespace, ctx.name, step, cached)
            ctx.progress.event("cached", key=key)
            return manifest
    if writes:
        ctx.writer.begin()
    result = body(ctx)
    if not writes:
        return {"metrics": result.metrics}
    manifest = ctx.writer.commit(
        input_key=key,
        code_version=code_version(step),
        metrics=result.metrics,
        outputs=result.outputs,
        extra=result.extra,
    )
    ctx.progress.event("committed", key=key, files=len(manifest["files"]))
    return manifest


_CREDENTIAL_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` without the values of credential env vars. Error messages quote what they could
    not read, and a data file can be anything, /proc/self/environ included."""
    for name, value in os.environ.items():
        if len(value) >= 8 and _CREDENTIAL_NAME.search(name):
            text = text.replace(value, "***")
    return text


def main(step: str, body: Callable[[StepContext], StepResult]) -> None:
    """Entry point for `python -m jobs.<step>`; exits with the code the Job policy expects."""
    guarded(step, lambda: execute(step, body) and 0)


def guarded(step: str, start: Callable[[], int]) -> None:
    """Run `start` and exit with the code it returns, or the code its error maps to (after the
    error's JSON line and termination message)."""
    _configure_logging()
    try:
        code = start()
    except FtError as err:
        message = redact(err.message)
        log.error("%s: %s", err.code, message)
        write_termination_message(emit("error", step=step, code=err.code, message=message))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        log.error("interrupted; nothing was committed")
        sys.exit(130)
    except Exception as err:  # an unexpected crash: keep the traceback in the log
        sys.stderr.write(redact(traceback.format_exc()))
        write_termination_message(
            emit("error", step=step, code="Crash", message=redact(f"{type(err).__name__}: {err}"))
        )
        sys.exit(EXIT_CRASH)
    sys.exit(code)
