"""kopf handlers: thin. Each one finds the run concerned and calls `Reconciler.reconcile`.

- every event of a FineTuneRun: keep its body (`RunCache`), so that no reconcile reads it;
- create / resume / spec update of a FineTuneRun: reconcile at once (a missing Secret is
  retried by kopf with backoff);
- any change of a step Job: reconcile its run (this is what moves a run along);
- a timer: every `progress_interval`, reconcile each unfinished run and read its running
  step's progress.json. It is one task sweeping all runs rather than a kopf timer per run:
  per-run timers would put a finalizer on every run (blocking its deletion while no
  controller runs) and keep a task and a body in memory per run, which 1,000 runs feel;
- deletion with `spec.cleanup: deleteArtifacts`: delete the run's store prefix (only these
  runs get a finalizer); the Jobs go with the run through their owner references.

Reconciles of one run never overlap (a lock per run). The blocking API and store calls
run in a thread pool, so the event loop keeps serving watch streams.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import kopf

from controller.kube import Kube, load_config
from controller.metrics import Metrics
from controller.observe import JobInfo, job_info
from controller.reconcile import SPEC_ANNOTATION, Outcome, Reconciler
from controller.runcache import RunCache
from controller.settings import ControllerSettings
from jobs.common.errors import FtError
from jobs.common.names import GROUP, LABEL_RUN, LABEL_STEP, PLURAL, VERSION

log = logging.getLogger("ft.controller")

RUNS = (GROUP, VERSION, PLURAL)
JOBS = ("batch", "v1", "jobs")
STEP_JOB = {LABEL_RUN: kopf.PRESENT, LABEL_STEP: kopf.PRESENT}
# What the timer sweeps: runs with a step running. Pending runs are new (the create
# handler has them) or wait for a Secret (kopf retries them with backoff).
SWEPT_PHASES = ("Running",)
MAX_SECRET_BACKOFF = 300.0


def _deletes_artifacts(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("cleanup") == "deleteArtifacts"


def jobs_of(index: kopf.Index, namespace: str, run: str) -> dict[str, JobInfo]:
    """The run's step Jobs by step, from the index (only the deterministically named ones)."""
    found = index.get((namespace, run), [])
    return {i.step: i for i in found if i.name == f"{run}-{i.step}"}


class KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Any, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Any) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Controller:
    """What the handlers share: settings, the reconciler, locks, the thread pool."""

    def __init__(self, settings: ControllerSettings):
        self.settings = settings
        self.metrics = Metrics()
        self.pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="ft-reconcile")
        # The sweep never takes more than a quarter of the threads from Job-driven reconciles.
        self.sweep_slots = asyncio.Semaphore(max(1, settings.workers // 4))
        self.locks = KeyedLocks()
        self.seen: dict[tuple[str, str], JobInfo] = {}
        self.runs = RunCache(SPEC_ANNOTATION)
        self.reconciler: Reconciler | None = None
        self.metrics_server: Any = None
        self.sweeper: asyncio.Task[None] | None = None

    def start(self, runs: kopf.Index, jobs: kopf.Index) -> None:
        load_config()
        self.reconciler = Reconciler(self.settings, Kube(self.settings.workers), self.metrics, self.runs)
        self.metrics.count_runs(runs)
        if self.settings.metrics_port:
            self.metrics_server, _ = self.metrics.serve(self.settings.metrics_port)
        self.sweeper = asyncio.create_task(self.sweep(runs, jobs))

    async def stop(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            await asyncio.gather(self.sweeper, return_exceptions=True)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def blocking(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def reconcile(self, namespace: str, name: str, jobs: kopf.Index, read_progress: bool = False) -> Outcome:
        assert self.reconciler is not None
        async with self.locks.hold((namespace, name)):
            found = jobs_of(jobs, namespace, name)  # read under the lock: the latest view
            return await self.blocking(self.reconciler.reconcile, namespace, name, found, read_progress)

    async def sweep(self, runs: kopf.Index, jobs: kopf.Index) -> None:
        """The timer: reconcile every running run and read its progress, forever."""
        while True:
            await asyncio.sleep(self.settings.progress_interval)
            keys = {key for phase in SWEPT_PHASES for key in list(runs.get(phase, ()))}
            await asyncio.gather(*(self._sweep_one(ns, name, jobs) for ns, name in keys))

    async def _sweep_one(self, namespace: str, name: str, jobs: kopf.Index) -> None:
        async with self.sweep_slots:
            try:
                await self.reconcile(namespace, name, jobs, read_progress=True)
            except Exception:  # one run's trouble must not stop the timer for the others
                log.exception("%s/%s: periodic reconcile failed", namespace, name)

    def secret_delay(self, retry: int) -> float:
        return min(MAX_SECRET_BACKOFF, self.settings.secret_backoff * 2**retry)


def build_registry(settings: ControllerSettings) -> kopf.OperatorRegistry:
    """All handlers, registered on a registry of their own (one per operator instance)."""
    ctl = Controller(settings)
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the controller's own client: in-cluster, else kubeconfig.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def configure(
        settings: kopf.OperatorSettings, runs_by_phase: kopf.Index, run_jobs: kopf.Index, **_: Any
    ) -> None:
        # kopf's own bookkeeping lives in annotations, so status holds only the run's status.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.persistence.finalizer = f"{GROUP}/delete-artifacts"
        # One Event per handler run would flood the API with 1,000 runs: post problems only.
        settings.posting.level = logging.WARNING
        # Watch only step Jobs (server-side; the handlers filter by label again).
        settings.watching.label_selectors[JOBS] = LABEL_RUN
        # Reconnect watches every few minutes rather than trusting long-lived connections.
        settings.watching.server_timeout = 270
        settings.watching.client_timeout = 300
        settings.watching.connect_timeout = 10
        settings.networking.request_timeout = 60
        # A namespaced Role cannot watch CRDs or namespaces: no dynamic discovery.
        settings.scanning.disabled = True
        # An unexpected error (API hiccup) is retried soon rather than after kopf's 60 s.
        settings.execution.default_backoff = 10
        ctl.start(runs_by_phase, run_jobs)

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        await ctl.stop()

    @kopf.index(*JOBS, id="run_jobs", labels=STEP_JOB, registry=registry)
    async def run_jobs(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], JobInfo]:
        info = job_info(body)
        return {(namespace, info.run): info} if info else {}

    @kopf.index(*RUNS, id="runs_by_phase", registry=registry)
    async def runs_by_phase(namespace: str, name: str, status: kopf.Status, **_: Any) -> dict[str, tuple[str, str]]:
        return {status.get("phase") or "Pending": (namespace, name)}

    @kopf.on.event(*RUNS, id="run-body", registry=registry)
    async def run_event(type: str | None, body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
        # Runs before the change handlers of the same event (kopf's order), so they find it here.
        if type == "DELETED":
            ctl.runs.drop(namespace, name)
        else:
            ctl.runs.put(body)

    @kopf.on.resume(*RUNS, id="resumed", registry=registry)
    @kopf.on.create(*RUNS, id="created", registry=registry)
    @kopf.on.update(*RUNS, id="spec-changed", field="spec", registry=registry)
    async def run_changed(namespace: str, name: str, retry: int, run_jobs: kopf.Index, **_: Any) -> None:
        outcome = await ctl.reconcile(namespace, name, run_jobs)
        if outcome.retry:
            raise kopf.TemporaryError(outcome.retry, delay=ctl.secret_delay(retry))

    @kopf.on.event(*JOBS, labels=STEP_JOB, registry=registry)
    async def job_changed(
        type: str | None, body: kopf.Body, namespace: str, name: str, labels: kopf.Labels, run_jobs: kopf.Index, **_: Any
    ) -> None:
        if type is None or (type == "ADDED" and not body.get("status")):
            return  # the initial listing (resume handlers cover it), or a Job just created
        info = None if type == "DELETED" else job_info(body)
        if info is not None and ctl.seen.get((namespace, name)) == info:
            return  # nothing the controller looks at changed
        if info is None:
            ctl.seen.pop((namespace, name), None)
        else:
            ctl.seen[(namespace, name)] = info
        await ctl.reconcile(namespace, labels[LABEL_RUN], run_jobs)

    @kopf.on.delete(*RUNS, id="delete-artifacts", when=_deletes_artifacts, backoff=30, registry=registry)
    async def delete_artifacts(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        assert ctl.reconciler is not None
        try:
            count = await ctl.blocking(ctl.reconciler.delete_artifacts, body)
        except FtError as err:
            raise kopf.TemporaryError(f"cannot delete the run's artifacts yet: {err}", delay=30) from err
        logger.info("deleted %d stored objects of the run", count)

    return registry
