"""One reconcile of one FineTuneRun: take its latest body, observe its steps, plan, act, write status.

Everything runs from what is observable (the run, its Jobs, the store), so a
controller restarted at any point picks up where things are. Jobs have fixed names
(`<run>-<step>`) and are created only if absent, so no step ever gets two Jobs.
Status is written only when it changed, and only over the version it was computed
from; a finished run is never acted on again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import kopf
from pydantic import ValidationError

from controller.jobs import build_job, build_service, job_name, required_secrets, store_uri
from controller.kube import Conflict, Kube
from controller.metrics import Metrics
from controller.observe import JobInfo, StepFacts, job_info, needs, observe, observe_step, pod_error
from controller.runcache import RunCache
from controller.settings import ControllerSettings
from jobs.common import artifacts, keys
from jobs.common.artifacts import now_iso
from jobs.common.errors import FtError, InvalidSpec
from jobs.common.names import API_VERSION, GROUP, KIND
from jobs.common.spec import FineTuneRun
from jobs.common.specio import run_from_obj
from jobs.common.progress import StepProgress
from jobs.common.status import TERMINAL_PHASES, ConditionType, Reason, RunStatus, condition
from jobs.common.store import Store, delete_prefix, open_store
from jobs.pipeline.cache import adopt_if_cached, outputs_to_uris
from jobs.pipeline.planner import Observed, Start, Stop, plan

log = logging.getLogger("ft.controller")

# The spec the run started with, so that later edits cannot change what it runs.
SPEC_ANNOTATION = f"{GROUP}/spec-snapshot"
# The only spec fields that may change once a run started: suspend stops/resumes it,
# cleanup only decides what deleting the run does.
MUTABLE_FIELDS = ("suspend", "cleanup")
_STATUS_KEYS = {f.alias or n for n, f in RunStatus.model_fields.items()}
# Reconciles of one run from a fresh read after their write was refused as stale, before giving up
# (kopf retries, or the next event or sweep comes).
CONFLICT_ATTEMPTS = 3


@dataclass(frozen=True)
class Outcome:
    retry: str | None = None  # why the run waits on something only time can fix (a missing Secret)


def spec_hash(spec: dict[str, Any]) -> str:
    fixed = {k: v for k, v in spec.items() if k not in MUTABLE_FIELDS}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns `old` into `new` (empty when they are equal)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        o = old.get(k)
        if isinstance(v, dict) and isinstance(o, dict):
            sub = merge_patch(o, v)
            if sub:
                patch[k] = sub
        elif v != o:
            patch[k] = v
    return patch


def with_condition(status: RunStatus, previous: RunStatus, cond: tuple[str, str, str, str], now: str) -> RunStatus:
    """`status` with condition `cond` set (replacing one of its type), keeping its
    lastTransitionTime when its status did not change."""
    new = condition(previous.conditions, *cond, now)
    return status.model_copy(update={"conditions": [c for c in status.conditions if c.type != new.type] + [new]})


def effective_spec(body: dict[str, Any]) -> dict[str, Any]:
    """The spec the run started with, plus the live values of the fields that may change."""
    live = body.get("spec") or {}
    snapshot = ((body.get("metadata") or {}).get("annotations") or {}).get(SPEC_ANNOTATION)
    spec = {k: v for k, v in (json.loads(snapshot) if snapshot else live).items() if k not in MUTABLE_FIELDS}
    spec.update({k: live[k] for k in MUTABLE_FIELDS if k in live})
    return spec


def _previous(raw: dict[str, Any] | None) -> RunStatus:
    try:
        return RunStatus.model_validate({k: v for k, v in (raw or {}).items() if k in _STATUS_KEYS})
    except ValidationError:
        log.warning("status is not readable; starting from an empty one")
        return RunStatus()


def same_inputs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two bodies of a run (as `RunCache` keeps them) differ in nothing but their version."""
    def unversioned(body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "metadata": {k: v for k, v in body["metadata"].items() if k != "resourceVersion"}}

    return unversioned(a) == unversioned(b)


@functools.lru_cache(maxsize=64)
def _open_store(uri: str) -> Store:
    return open_store(uri)


class Reconciler:
    def __init__(self, settings: ControllerSettings, kube: Kube, metrics: Metrics, runs: RunCache):
        self.settings = settings
        self.kube = kube
        self.metrics = metrics
        self.runs = runs  # what the watch last showed of each run, and what our own writes returned
        # Relative paths in a spec are resolved like the step harness does (FT_BASE_DIR or
        # the working directory), so that both compute the same cache keys.
        self.base_dir = Path(os.environ.get("FT_BASE_DIR", os.getcwd()))

    def reconcile(self, namespace: str, name: str, jobs: dict[str, JobInfo], read_progress: bool = False) -> Outcome:
        """Reconcile from the watched copy of the run (read only if there is none), and from a
        fresh read each time a write is refused because the run changed meanwhile."""
        started = time.perf_counter()
        body, conflicts = self.runs.get(namespace, name), 0
        try:
            while True:
                if body is None:
                    body = self._read(namespace, name)
                if body is None or body["metadata"].get("deletionTimestamp"):
                    return Outcome()
                try:
                    return self._reconcile(body, jobs, read_progress)
                except Conflict:
                    conflicts += 1
                    if conflicts == CONFLICT_ATTEMPTS:
                        raise
                    log.info("%s/%s changed during its reconcile; reconciling again", namespace, name)
                    body = None
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    def _read(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.kube.get_run(namespace, name)
        return None if body is None else self.runs.put(body)

    def delete_artifacts(self, body: dict[str, Any]) -> int:
        """Delete everything under the run's prefix in its store; the number of objects."""
        meta = body["metadata"]
        uri = (effective_spec(body).get("store") or {}).get("uri") or self.settings.default_store_uri
        if not uri:
            return 0
        return delete_prefix(_open_store(uri), keys.run_prefix(meta["namespace"], meta["name"]))

    # --- the steps of a reconcile ----------------------------------------------------------

    def _reconcile(self, body: dict[str, Any], jobs: dict[str, JobInfo], read_progress: bool) -> Outcome:
        meta = body["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta.get("uid", "")
        prev = _previous(body.get("status"))
        if prev.phase in TERMINAL_PHASES:
            return Outcome()
        live = body.get("spec") or {}
        effective = effective_spec(body)
        now = now_iso()
        try:
            run = self._validate(ns, name, effective)
        except InvalidSpec as err:
            self._finish(body, prev, plan([], {}, now=now, previous=prev, invalid=err.message).status, {})
            return Outcome()
        if SPEC_ANNOTATION not in (meta.get("annotations") or {}):
            # Over the version read: the snapshot is the spec that was just validated.
            snapshot = {"metadata": {"annotations": {SPEC_ANNOTATION: json.dumps(live, sort_keys=True)}}}
            body = self.runs.put(self.kube.patch_run(ns, name, snapshot, meta.get("resourceVersion")))
        steps = run.spec.steps.enabled()
        jobs = {**jobs, **self._unindexed_jobs(ns, name, steps, jobs, prev)}
        observed = observe(steps, jobs, prev, uid, self._facts(run, needs(steps, jobs, prev, uid), jobs, read_progress))
        h = spec_hash(effective)

        missing_secret = None
        for _ in range(len(steps)):  # each pass settles one step: cached, started or stopped
            p = plan(steps, observed, now=now, previous=prev, suspend=run.spec.suspend, spec_hash=h)
            for action in p.actions:
                if isinstance(action, Stop):
                    self.kube.delete_job(ns, job_name(name, action.step))
            start = next((a for a in p.actions if isinstance(a, Start)), None)
            if start is None:
                break
            cached = self._from_cache(run, start.step)
            if cached is not None:
                observed[start.step] = cached
                continue
            missing_secret, observed[start.step] = self._start(body, run, start, prev)
            if missing_secret:
                break
        # The status after what was just done (its actions are done or wait for a Secret).
        p = plan(steps, observed, now=now, previous=prev, suspend=run.spec.suspend, spec_hash=h)
        status = p.status.model_copy(
            update={"artifacts": {**prev.artifacts, **p.status.artifacts}, "observed_generation": meta.get("generation")}
        )
        if prev.spec_hash and spec_hash(live) != prev.spec_hash:
            status = with_condition(status, prev, (
                ConditionType.SPEC_CHANGED, "True", Reason.SPEC_CHANGED,
                "the spec changed after the run started; only spec.suspend and spec.cleanup take "
                "effect, the run goes on with the spec it started with",
            ), now)
        if missing_secret:
            status = self._waiting_for_secret(status, prev, missing_secret, now)
        self._finish(body, prev, status, observed)
        return Outcome(retry=missing_secret)

    def _validate(self, ns: str, name: str, spec: dict[str, Any]) -> FineTuneRun:
        run = run_from_obj(
            {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": ns}, "spec": spec},
            source=f"FineTuneRun {ns}/{name}",
        )
        if not store_uri(run, self.settings):
            raise InvalidSpec("spec.store.uri: not set, and the controller has no default store (FT_STORE_URI)")
        return run

    def _unindexed_jobs(
        self, ns: str, name: str, steps: list[str], jobs: dict[str, JobInfo], prev: RunStatus
    ) -> dict[str, JobInfo]:
        """Jobs the status says were created but the watch has not shown yet, read directly:
        without this, a reconcile right after a Job's creation would take the step for unstarted."""
        out = {}
        for s in prev.steps:
            if s.name in steps and s.name not in jobs and s.job and s.phase == "Running":
                body = self.kube.get_job(ns, s.job)
                info = job_info(body) if body else None
                if info is not None:
                    out[s.name] = info
        return out

    def _start(self, body: dict[str, Any], run: FineTuneRun, start: Start, prev: RunStatus) -> tuple[str | None, Observed]:
        """Create the step's Job if absent; or say which Secret it waits for."""
        ns, uid = run.metadata.namespace, body["metadata"].get("uid", "")
        job = build_job(run, start.step, self.settings)
        for secret, key in required_secrets(job):
            present = self.kube.secret_keys(ns, secret)
            if present is None or key not in present:
                what = "not found" if present is None else f"has no key {key!r}"
                msg = f"Secret {secret!r} {what} in namespace {ns} (step {start.step} needs its key {key!r})"
                return msg, Observed(phase="NotStarted", attempts=start.attempt - 1, reason=Reason.SECRET_NOT_FOUND, message=msg)
        kopf.adopt(job, owner=body)
        jname = job["metadata"]["name"]
        blocked = self._ensure_service(run, body) if start.step == "train" else None
        if blocked:
            return None, Observed(phase="Running", job=jname, message=blocked)
        if self.kube.create_job(ns, job):
            log.info("created Job %s/%s", ns, jname)
            created = observe_step(job_info(job), None, StepFacts(), uid)
            return None, replace(created, attempts=start.attempt)
        # The name is taken: our own Job not yet seen by the watch, a Job of an earlier run
        # of the same name, or someone else's Job.
        existing = self.kube.get_job(ns, jname)
        info = job_info(existing) if existing else None
        if existing is None or info is not None:
            prev_step = next((s for s in prev.steps if s.name == start.step), None)
            return None, observe_step(info, prev_step, StepFacts(), uid)
        msg = f"a Job named {jname} exists that is not a step of this run; delete it to let the run go on"
        return None, Observed(phase="Running", job=jname, message=msg)

    def _ensure_service(self, run: FineTuneRun, body: dict[str, Any]) -> str | None:
        """Create the headless Service a step over several pods needs, before its Job (its pods'
        names resolve only through it); or say whose Service holds the name."""
        service = build_service(run)
        if service is None:
            return None
        kopf.adopt(service, owner=body)
        ns, sname = run.metadata.namespace, service["metadata"]["name"]
        if self.kube.create_service(ns, service):
            log.info("created Service %s/%s", ns, sname)
            return None
        existing = self.kube.get_service(ns, sname)
        owners = [r.get("uid") for r in ((existing or {}).get("metadata") or {}).get("ownerReferences") or [] if r.get("controller")]
        if existing is not None and owners == [body["metadata"].get("uid")]:
            return None  # ours, from an earlier reconcile
        return (f"waiting for Service {sname} of an earlier run or another owner to be deleted: "
                "the train step's pods find each other through it")

    def _waiting_for_secret(self, status: RunStatus, prev: RunStatus, message: str, now: str) -> RunStatus:
        started = any(s.attempts or s.phase != "Pending" for s in status.steps)
        status = with_condition(status, prev, (ConditionType.RUNNING, "False", Reason.SECRET_NOT_FOUND, message), now)
        return status.model_copy(update={"phase": status.phase if started else "Pending"})

    def _store(self, run: FineTuneRun) -> Store | None:
        try:
            return _open_store(store_uri(run, self.settings) or "")
        except (FtError, OSError) as err:
            log.warning("store of %s/%s is not reachable: %s", run.metadata.namespace, run.metadata.name, err)
            return None

    def _facts(self, run: FineTuneRun, need: dict[str, str], jobs: dict[str, JobInfo], read_progress: bool) -> dict[str, StepFacts]:
        """Read manifests of completed steps, errors of failed ones, and (on the timer)
        progress of running ones. A store that cannot be read costs detail, never correctness."""
        ns, name = run.metadata.namespace, run.metadata.name
        facts: dict[str, StepFacts] = {}
        store = self._store(run) if any(w != "error" for w in need.values()) else None
        for step, what in need.items():
            try:
                if what == "error":
                    facts[step] = StepFacts(error=pod_error(self.kube.job_pods(ns, jobs[step].name), step))
                elif what == "manifest" and store is not None:
                    manifest = artifacts.read_manifest(store, ns, name, step)
                    outputs = outputs_to_uris(store, manifest) if manifest else {}
                    facts[step] = StepFacts(manifest=manifest, outputs=outputs)
                elif what == "progress" and read_progress and store is not None:
                    raw = store.get_bytes(keys.join(keys.step_prefix(ns, name, step), "progress.json"))
                    facts[step] = StepFacts(progress=StepProgress.of(json.loads(raw)) if raw else None)
            except (FtError, OSError, ValueError) as err:
                log.warning("%s/%s step %s: cannot read its %s: %s", ns, name, step, what, err)
        return facts

    def _from_cache(self, run: FineTuneRun, step: str) -> Observed | None:
        """A committed cache entry for the step's key, adopted as its output: no Job needed."""
        store = self._store(run)
        if store is None:
            return None
        ns, name = run.metadata.namespace, run.metadata.name
        try:
            hit = adopt_if_cached(store, run, step, self.base_dir)
        except (FtError, OSError) as err:
            # The step itself checks the cache too; here it only saves starting a pod.
            log.info("%s/%s step %s: no cache lookup (%s)", ns, name, step, err)
            return None
        if hit is not None:
            log.info("%s/%s step %s: %s, no Job needed", ns, name, step, hit.message)
        return hit

    def _finish(self, body: dict[str, Any], prev: RunStatus, status: RunStatus, observed: dict[str, Observed]) -> None:
        """Write the status when it changed, and count what finished."""
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        old = {k: v for k, v in (body.get("status") or {}).items() if k in _STATUS_KEYS}
        patch = merge_patch(old, status.model_dump(mode="json", by_alias=True, exclude_none=True))
        if patch:
            self._write_status(body, patch)
            if status.phase != prev.phase:
                log.info("%s/%s: %s -> %s", ns, name, prev.phase, status.phase)
        self.metrics.step_transitions(prev, observed)

    def _write_status(self, body: dict[str, Any], patch: dict[str, Any]) -> None:
        """Patch status over the version it was computed from. Refused because the run moved on:
        if what the status was computed from (spec, status, snapshot, deletion) is unchanged,
        as when only kopf's own annotations were written meanwhile, the same patch is written over
        the new version; else `Conflict` goes up and the whole reconcile starts over."""
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        try:
            self.runs.put(self.kube.patch_run_status(ns, name, patch, meta.get("resourceVersion")))
            return
        except Conflict:
            fresh = self._read(ns, name)
            if fresh is None or not same_inputs(fresh, body):
                raise
        self.runs.put(self.kube.patch_run_status(ns, name, patch, fresh["metadata"].get("resourceVersion")))
