"""Fifty runs at once against `ftctl controller` in a process of its own.

The test plays the Job controller for all of them: each new Job is completed at once
(without running a pod: the figures are the controller's, not the steps'). It prints
the time from a Job's completion to the next step's Job appearing, the wall time, and
the controller's RSS and CPU time. The benchmark suite runs the same with 1,000 runs;
no timing is asserted here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from tests.controller.harness import REPO, STEPS, Cluster, free_port, full_spec, wait_for

pytestmark = pytest.mark.asyncio
RUNS = 50


def start_controller(cluster: Cluster, kubeconfig, log_path) -> tuple[subprocess.Popen, str]:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"

    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "FT_NAMESPACES": cluster.ns,
        "FT_STORE_URI": cluster.store.uri,
        "FT_METRICS_PORT": "0",
        "FT_LIVENESS": liveness,
        "FT_PROGRESS_INTERVAL": "30",
        "PYTHONPATH": str(REPO),
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "controller"], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    return proc, liveness


def alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


async def test_fifty_runs_at_once(cluster: Cluster, kubeconfig, tmp_path):
    cluster.emulator.keep_requests = False
    log = tmp_path / "controller.log"
    proc, liveness = start_controller(cluster, kubeconfig, log)
    try:
        await wait_for("controller liveness", lambda: alive(liveness), timeout=60)
        await wait_for("controller watches", lambda: cluster.watches() >= 2, timeout=30)
        controller = psutil.Process(proc.pid)
        idle_rss = controller.memory_info().rss
        names = [f"run-{i:03d}" for i in range(RUNS)]
        started = time.monotonic()
        await asyncio.gather(*(cluster.create_run(n, full_spec()) for n in names))

        seen: dict[str, float] = {}
        completed: dict[str, float] = {}
        unfinished = set(names)
        peak_rss = 0
        while unfinished:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - started < 120, f"not finished in 2 minutes:\n{log.read_text()[-3000:]}"
            now = time.monotonic()
            new = [j for j in cluster.jobs() if j not in seen]
            seen.update({j: now for j in new})
            if new:
                await asyncio.gather(*(cluster.complete_job(j, run_pod=False) for j in new))
                completed.update({j: time.monotonic() for j in new})
            unfinished = {n for n in unfinished if cluster.status(n).get("phase") != "Succeeded"}
            peak_rss = max(peak_rss, controller.memory_info().rss)
            await asyncio.sleep(0.01)
        wall = time.monotonic() - started

        # One Job per step, each created once (never deleted and created again).
        jobs = {key: obj for key, obj in cluster.emulator.objects.items() if key[1] == cluster.ns and key[2] in seen}
        assert len(jobs) == RUNS * len(STEPS) and all(None not in list(o.history) for o in jobs.values())
        latencies = sorted(
            seen[f"{n}-{b}"] - completed[f"{n}-{a}"] for n in names for a, b in zip(STEPS, STEPS[1:])
        )
        p50 = statistics.median(latencies)
        p99 = latencies[int(0.99 * (len(latencies) - 1))]
        cpu = sum(controller.cpu_times()[:2])
        print(
            f"\n{RUNS} runs x {len(STEPS)} steps: wall {wall:.1f}s; Job success -> next Job: "
            f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
            f"controller RSS {idle_rss / 2**20:.0f} MiB idle, {peak_rss / 2**20:.0f} MiB peak; CPU {cpu:.1f}s"
        )
    finally:
        # Waited for in a thread: the emulator in this event loop must keep answering.
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert log.read_text().count("created Job") == RUNS * len(STEPS)
