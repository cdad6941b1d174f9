"""Controller scale: 1,000 FineTuneRuns created at once against kmock's Kubernetes emulator.

    python -m bench.controller_scale              # 1,000 runs of five steps
    python -m bench.controller_scale --quick      # 200 runs
    python -m bench.controller_scale --run-pods   # also run each Job's pod (the step harness)
    python -m bench.controller_scale --job-seconds 60   # each Job runs 30-90 s before it succeeds

The controller runs as its own process (`python -m controller`, as in its pod), pointed at
the emulator by a kubeconfig. This process holds the emulator (the controller tests'
`Emulator`, tests/controller/harness.py) and plays the Job controller with their
`Cluster`: each Job the controller creates is marked Complete at once, as in the
controller's own scale test (the worst case: every hand-off of every run queues at the same
moment), or, with --job-seconds S, after a random S/2 to 3S/2 seconds, as Jobs that do work
finish spread over time; with --run-pods its pod is run first (the real step harness
commits a small output to the file:// store, in a worker process). Measured: the time from
a Job's success (the emulator applying its status patch) to the creation of the run's next
Job, the wall time until every run has finished, and the controller process's peak RSS
and CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from bench import report

GOAL_P99 = 1.0
GOAL_RSS = 150 * 1_000_000
JOBS = "batch/v1/jobs"
POD_WORKERS = 2
CREATE_CONCURRENCY = 50


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def handoffs(succeeded: dict[str, float], created: dict[str, float], steps: Sequence[str]) -> dict[str, float]:
    """For each Job `<run>-<step>` that succeeded and whose run's next step's Job was created:
    creation time of the next Job minus success time of this one, by the Job that succeeded."""
    out = {}
    for job, done in succeeded.items():
        run, _, step = job.rpartition("-")
        if step in steps and steps.index(step) + 1 < len(steps):
            nxt = f"{run}-{steps[steps.index(step) + 1]}"
            if nxt in created:
                out[job] = created[nxt] - done
    return out


def handoff_latencies(succeeded: dict[str, float], created: dict[str, float], steps: Sequence[str]) -> list[float]:
    return list(handoffs(succeeded, created, steps).values())


# --- the pods, in worker processes -------------------------------------------------------------------


def run_pod(step: str, env: dict[str, str]) -> None:
    """What a step pod does: the real step harness with the Job's environment and the
    controller tests' body (a small committed output)."""
    from jobs.common.stepctx import execute
    from tests.controller.harness import _write_result, patched_env

    with patched_env(env):
        execute(step, _write_result)


def quiet_pod_worker() -> None:
    """Pods' progress lines go to their logs, not to this benchmark's output."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def pod_env(job: dict[str, Any], scratch: Path) -> tuple[str, dict[str, str]]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["FT_SCRATCH"] = str(scratch / job["metadata"]["name"])
    env["FT_PROGRESS_INTERVAL"] = "0"
    return container["command"][-1].removeprefix("jobs."), env


# --- the emulator, timed ----------------------------------------------------------------------------


@dataclass
class Timeline:
    """What the emulator saw, with this process's monotonic clock."""

    created: dict[str, float] = field(default_factory=dict)  # Job -> created
    succeeded: dict[str, float] = field(default_factory=dict)  # Job -> marked succeeded
    finished: dict[str, tuple[str, float]] = field(default_factory=dict)  # run -> (final phase, when)
    new_jobs: asyncio.Queue = field(default_factory=asyncio.Queue)
    requests: Counter = field(default_factory=Counter)  # "verb resource[/subresource]" -> count, watches aside
    handling: float = 0.0  # seconds spent inside the emulator's handler by those requests


def timed_emulator(timeline: Timeline) -> Any:
    """kmock's emulator noting when each Job is created and marked succeeded, and when each
    run's status reaches a final phase."""
    import kmock

    from tests.controller.harness import RUNS, Emulator

    jobs, runs = kmock.resource(JOBS), kmock.resource(RUNS)

    class TimedEmulator(Emulator):
        keep_requests = False  # thousands of requests: keep objects, not the request log

        async def _handle(self, request: Any) -> Any:
            now = time.monotonic()
            status = (request.data or {}).get("status") if isinstance(request.data, dict) else None
            if request.resource == jobs and request.action == kmock.action.CREATE:
                name = request.data["metadata"]["name"]
                timeline.created.setdefault(name, now)
                timeline.new_jobs.put_nowait(name)
            elif request.resource == jobs and status and status.get("succeeded"):
                timeline.succeeded.setdefault(request.name, now)
            elif request.resource == runs and status and status.get("phase") in ("Succeeded", "Failed"):
                timeline.finished.setdefault(request.name, (status["phase"], now))
            if request.resource is None or request.resource.plural is None or request.action == kmock.action.WATCH:
                return await super()._handle(request)  # watch streams (and their listings) last: not timed
            sub = f"/{request.subresource}" if request.subresource else ""
            what = f"{request.action.value.lower()} {request.resource.plural}{sub}"
            timeline.requests[what] += 1
            try:
                return await super()._handle(request)
            except kmock.KubernetesError as err:
                if err.status == 409:  # a refused precondition or an existing name: counted apart too
                    timeline.requests[f"{what} refused (409)"] += 1
                raise
            finally:
                timeline.handling += time.monotonic() - now

    return TimedEmulator()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_controller(url: str, namespace: str, store: str, work: Path) -> tuple[subprocess.Popen, int, int]:
    """The controller process; (process, liveness port, metrics port)."""
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": url}}],
        "users": [{"name": "emu", "user": {}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
    }))
    live, metrics = _free_port(), _free_port()
    env = report.python_env({
        "KUBECONFIG": str(kubeconfig), "FT_NAMESPACES": namespace, "FT_STORE_URI": store,
        "FT_METRICS_PORT": str(metrics), "FT_LIVENESS": f"http://127.0.0.1:{live}/healthz",
        "FT_IMAGE": "registry.example/finetune-operator:bench",
    })
    env.pop("KUBERNETES_SERVICE_HOST", None)
    log = open(work / "controller.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "controller"], env=env, stdout=log, stderr=log)
    return proc, live, metrics


def stop_process(proc: subprocess.Popen, grace: float = 20) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _wait_live(proc: subprocess.Popen, port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the controller exited during start-up (see its log)")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
            await writer.drain()
            line = await reader.readline()
            writer.close()
            if b" 200 " in line:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the controller's liveness endpoint did not answer")


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """Upper bound of the Prometheus bucket holding the q-th quantile (0-1); buckets are
    (upper bound, cumulative count), in order, ending with +Inf."""
    total = buckets[-1][1]
    return next((bound for bound, count in buckets if count >= q * total), math.inf) if total else math.nan


def reconcile_histogram(port: int) -> tuple[list[tuple[float, float]], float, float]:
    """(buckets, count, sum) of the controller's finetune_reconcile_seconds, from its /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == "finetune_reconcile_seconds")
    buckets = sorted((float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket"))
    count = next(s.value for s in family.samples if s.name.endswith("_count"))
    total = next(s.value for s in family.samples if s.name.endswith("_sum"))
    return buckets, count, total


async def loop_lag(samples: list[float], every: float = 0.05) -> None:
    """How late this process's event loop wakes up: the wait an API request meets in the emulator."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(every)
        samples.append(time.monotonic() - started - every)


class JobPlayer:
    """The Job controller (and the pods, with `run_pods`): marks each new Job Complete, after
    running its pod in a worker process when asked. A bounded number at a time, as a
    cluster's capacity would; an API call that times out (the emulator is busy) is retried."""

    def __init__(self, cluster: Any, timeline: Timeline, work: Path, run_pods: bool, job_seconds: float,
                 in_flight: int = 16):
        self.cluster = cluster
        self.job_seconds = job_seconds
        self.durations = random.Random(0)
        self.timeline = timeline
        self.scratch = work / "scratch"
        self.gate = asyncio.Semaphore(in_flight)
        self.errors: list[str] = []
        self.pods = ProcessPoolExecutor(
            max_workers=POD_WORKERS, mp_context=multiprocessing.get_context("spawn"), initializer=quiet_pod_worker
        ) if run_pods else None
        self.tasks: set[asyncio.Task] = set()
        self.task = asyncio.create_task(self._loop())

    async def _play(self, name: str) -> None:
        if self.job_seconds:
            await asyncio.sleep(self.durations.uniform(0.5, 1.5) * self.job_seconds)
        async with self.gate:
            try:
                if self.pods:
                    body = self.cluster.emulator.objects[JOBS, self.cluster.ns, name].raw
                    step, env = pod_env(body, self.scratch)
                    await asyncio.get_running_loop().run_in_executor(self.pods, run_pod, step, env)
                for attempt in range(5):
                    try:
                        await self.cluster.complete_job(name, run_pod=False)
                        break
                    except (asyncio.TimeoutError, OSError):
                        if attempt == 4:
                            raise
                        await asyncio.sleep(1)
            except Exception as err:  # noqa: BLE001  # reported with the figures, not lost in a task
                self.errors.append(f"{name}: {type(err).__name__}: {err}")

    async def _loop(self) -> None:
        while True:
            task = asyncio.create_task(self._play(await self.timeline.new_jobs.get()))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def stop(self) -> None:
        self.task.cancel()
        for task in self.tasks:
            task.cancel()
        if self.pods:
            self.pods.shutdown(wait=True, cancel_futures=True)


async def _measure(runs: int, work: Path, timeout: float, run_pods: bool, job_seconds: float) -> dict[str, Any]:
    import kmock
    import psutil

    from jobs.common.names import SHORT_NAME
    from jobs.common.store import FileStore
    from tests.controller.harness import RUNS, STEPS, Cluster, full_spec, load_crd

    timeline = Timeline()
    k8s = timed_emulator(timeline)
    k8s.resources.load_bundled()
    crd = load_crd()["spec"]
    k8s.resources[RUNS] = kmock.ResourceInfo(
        kind=crd["names"]["kind"], singular=crd["names"]["singular"], namespaced=True,
        shortnames={SHORT_NAME}, verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        subresources=set(crd["versions"][0].get("subresources", {})),
    )
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    store = FileStore(work / "store")
    names = [f"run{i:04d}" for i in range(runs)]
    async with k8s, kmock.Server(k8s) as server:
        cluster = Cluster(k8s, server, namespace, store)
        proc, live, metrics_port = start_controller(cluster.url, namespace, store.uri, work)
        sampler = report.TreeSampler(proc.pid, every=0.25)
        player = lag_probe = None
        lags: list[float] = []
        try:
            await _wait_live(proc, live)
            ctl, me = psutil.Process(proc.pid), psutil.Process()
            started_rss = ctl.memory_info().rss
            cpu0, own0, t0 = sum(ctl.cpu_times()[:2]), sum(me.cpu_times()[:2]), time.monotonic()
            player = JobPlayer(cluster, timeline, work, run_pods, job_seconds)
            lag_probe = asyncio.create_task(loop_lag(lags))
            gate = asyncio.Semaphore(CREATE_CONCURRENCY)

            async def create(i: int) -> float:
                spec = full_spec()
                spec["steps"]["eval"]["mode"] = f"bench-{i}"  # distinct step keys: no run is served from cache
                async with gate:
                    await cluster.create_run(names[i], spec)
                    return time.monotonic()

            run_created = await asyncio.gather(*(create(i) for i in range(runs)))
            t_created = time.monotonic()
            while len(timeline.finished) < runs and time.monotonic() < t0 + timeout and not player.errors:
                await asyncio.sleep(0.25)
            t1 = time.monotonic()
            cpu1, own1 = sum(ctl.cpu_times()[:2]), sum(me.cpu_times()[:2])
            end_rss = ctl.memory_info().rss
            buckets, reconciles, reconcile_sum = await asyncio.to_thread(reconcile_histogram, metrics_port)
        finally:
            peak = sampler.stop()
            if lag_probe:
                lag_probe.cancel()
            if player:
                player.stop()
            stop_process(proc)
    if player.errors:
        raise RuntimeError(f"the Job player failed on {len(player.errors)} Job(s), e.g. {player.errors[0]}")
    phases = [p for p, _ in timeline.finished.values()]
    first_job = [timeline.created[f"{n}-{STEPS[0]}"] - c for n, c in zip(names, run_created)
                 if f"{n}-{STEPS[0]}" in timeline.created]
    return {
        "runs": runs, "steps": len(STEPS),
        "succeeded": phases.count("Succeeded"), "failed": phases.count("Failed"),
        "unfinished": runs - len(phases),
        "handoff": handoff_latencies(timeline.succeeded, timeline.created, STEPS), "firstJob": first_job,
        # The slowest hand-offs, with when their Job succeeded (seconds after the first create): when
        # they happened says what held them (a watch reconnect, a sweep, a burst).
        "slowest": [(wait, job, timeline.succeeded[job] - t0) for job, wait in sorted(
            handoffs(timeline.succeeded, timeline.created, STEPS).items(), key=lambda kv: -kv[1])[:5]],
        "wall": t1 - t0, "createWall": t_created - t0, "jobs": len(timeline.created),
        "ctlCpu": cpu1 - cpu0, "ctlPeakRss": peak, "ctlStartRss": started_rss, "ctlEndRss": end_rss,
        "harnessCpu": own1 - own0, "runPods": run_pods, "jobSeconds": job_seconds, "loopLag": lags,
        "requests": dict(timeline.requests), "handling": timeline.handling,
        "reconciles": reconciles, "reconcileMean": reconcile_sum / reconciles if reconciles else math.nan,
        "reconcileP50": histogram_quantile(buckets, 0.5), "reconcileP99": histogram_quantile(buckets, 0.99),
    }


def measure(runs: int, timeout: float, run_pods: bool, job_seconds: float = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-controller-") as tmp:
        return asyncio.run(_measure(runs, Path(tmp), timeout, run_pods, job_seconds))


def total_requests(m: dict[str, Any]) -> int:
    """Requests made, each once (the refused ones are also counted apart)."""
    return sum(v for k, v in m["requests"].items() if not k.endswith("(409)"))


def build_section(m: dict[str, Any]) -> report.Section:
    h, f, lag = m["handoff"], m["firstJob"], m["loopLag"]
    p50, p99 = percentile(h, 50), percentile(h, 99)
    rows = [
        ["runs created at once", f"{m['runs']:,} ({m['steps']} steps each, created in {report.fmt_s(m['createWall'])})"],
        ["runs Succeeded / Failed / unfinished", f"{m['succeeded']:,} / {m['failed']:,} / {m['unfinished']:,}"],
        ["Jobs created", f"{m['jobs']:,}"],
        ["Job success -> next Job created, p50 / p99 / max",
         f"{report.fmt_s(p50)} / {report.fmt_s(p99)} / {report.fmt_s(max(h, default=float('nan')))} ({len(h):,} hand-offs)"],
        ["slowest hand-offs: Job that succeeded (seconds into the run) wait",
         ", ".join(f"{job} ({at:.0f} s) {report.fmt_s(wait)}" for wait, job, at in m.get("slowest", []))],
        ["run created -> first Job created, p50 / p99",
         f"{report.fmt_s(percentile(f, 50))} / {report.fmt_s(percentile(f, 99))}"],
        ["total wall time (first create to last run finished)", report.fmt_s(m["wall"])],
        ["controller peak RSS (start -> end)",
         f"{report.fmt_mib(m['ctlPeakRss'])} ({report.fmt_mib(m['ctlStartRss'])} -> {report.fmt_mib(m['ctlEndRss'])})"],
        ["controller CPU", f"{report.fmt_s(m['ctlCpu'])} ({m['ctlCpu'] / m['wall']:.0%} of one core over the wall time)"],
        ["controller reconciles: count, per second, mean, p50 / p99 (its own histogram, bucket bounds)",
         f"{m['reconciles']:,.0f}, {m['reconciles'] / m['wall']:.0f}/s, {report.fmt_s(m['reconcileMean'])}, "
         f"<= {report.fmt_s(m['reconcileP50'])} / <= {report.fmt_s(m['reconcileP99'])}"],
        ["emulator + Job player CPU (the benchmark process)",
         f"{report.fmt_s(m['harnessCpu'])} ({m['harnessCpu'] / m['wall']:.0%} of one core)"],
        ["API requests (controller and Job player; watches aside)",
         f"{total_requests(m):,}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(m["requests"].items(), key=lambda kv: -kv[1]))],
        ["time inside the emulator's handler, mean per request",
         report.fmt_s(m["handling"] / max(1, total_requests(m)))],
        ["emulator event-loop lag, p50 / p99 / max",
         f"{report.fmt_s(percentile(lag, 50))} / {report.fmt_s(percentile(lag, 99))} / {report.fmt_s(max(lag, default=math.nan))}"],
    ]
    goals = [
        report.Goal("hand-off p99 (Job success -> next Job)", f"<= {GOAL_P99:g} s", report.fmt_s(p99), p99 <= GOAL_P99),
        report.Goal("controller peak RSS", f"<= {GOAL_RSS / 1e6:.0f} MB", f"{m['ctlPeakRss'] / 1e6:.0f} MB",
                    m["ctlPeakRss"] <= GOAL_RSS),
    ]
    pods = "each Job's pod ran the step harness before the Job was completed" if m["runPods"] else (
        "Jobs were completed without running pods")
    seconds = m.get("jobSeconds") or 0
    if seconds:
        pods += f", each after running {seconds / 2:g} to {1.5 * seconds:g} s"
    requests = total_requests(m)
    by_player = m["requests"].get("create finetuneruns", 0) + m["requests"].get("update jobs/status", 0)
    rate = m["reconciles"] / m["wall"]
    calls = (requests - by_player) / max(1, m["reconciles"])
    meaning = (
        f"With {m['runs']:,} runs in flight, the controller moved a run to its next step {report.fmt_s(p50)} after "
        f"the previous Job succeeded (p50; p99 {report.fmt_s(p99)}); {pods}. "
    )
    if seconds:
        meaning += (
            f"Jobs finishing spread over time, as Jobs that do work do, arrive at {len(h) / m['wall']:.0f} "
            f"hand-offs a second on average and each is handled as it comes: the hand-off time is about one "
            f"reconcile."
        )
    else:
        meaning += (
            f"Every run's Job is completed the moment it appears, so up to {m['runs']:,} transitions wait at once and "
            f"drain as fast as the controller reconciles ({rate:.0f} a second over this run): the hand-off time is that "
            f"queue, not one reconcile."
        )
    meaning += (
        f" Each reconcile makes {calls:.1f} API calls on average and takes {report.fmt_s(m['reconcileMean'])}, most of "
        f"it waiting on the API server, which here is kmock's single-threaded in-memory emulator (it scans every "
        f"stored object on each request) in the benchmark's own process, sharing the 2 cores with the controller."
    )
    return report.Section(title="Controller scale (kmock emulator)", columns=["measure", "value"],
                          rows=rows, meaning=meaning, goals=goals)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.controller_scale", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--runs", type=int, help="runs created at once (default 1000; 200 with --quick)")
    p.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    p.add_argument("--run-pods", action="store_true",
                   help="run each Job's pod (the step harness writing a committed output) before completing it")
    p.add_argument("--job-seconds", type=float, default=0,
                   help="each Job runs a random S/2 to 3S/2 seconds before it succeeds (default 0: at once)")
    args = p.parse_args(argv)
    runs = args.runs or (200 if args.quick else 1000)
    where = report.machine()
    m = measure(runs, args.timeout, args.run_pods, args.job_seconds)
    report.publish(build_section(m), report.command_line("bench.controller_scale", argv), report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
