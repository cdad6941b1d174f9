"""Controller scale on a real API server: FineTuneRuns created at once against the control plane
of tests/cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, built from
source), with kwok's fake nodes playing the kubelets.

    python -m bench.controller_scale_cluster             # 1,000 runs of five steps
    python -m bench.controller_scale_cluster --quick     # 100 runs
    python -m bench.controller_scale_cluster --runs 300

Here nothing is emulated but the pods' containers: the real Job controller makes each Job's
pod, the real scheduler binds it to a fake node, and kwok marks a Job's pod Running, then
Succeeded, so the Job controller completes the Job. The controller runs as its own process
with the chart's ServiceAccount token. This process watches the Jobs and times, on its own
clock, each Job's success (the first event with a Complete condition) to the creation of the
run's next Job (its ADDED event). The controller's API requests are counted from the API
server's audit log, by its ServiceAccount.

kwok comes from Go modules (`make kwok`, cached like the cluster binaries).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from bench import report
from bench.controller_scale import GOAL_P99, GOAL_RSS, handoffs, percentile

KWOK_VERSION = "v0.7.0"
STEPS = ("eval", "pack", "train", "evaluate", "gguf")
FAKE_NODES = 4


def kwok_binary() -> Path:
    from tests.miniokit import CACHE_BIN

    path = CACHE_BIN / f"kwok-{KWOK_VERSION}"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `make kwok`")
    return path


def fake_node(name: str) -> dict[str, Any]:
    capacity = {"cpu": "1000", "memory": "10Ti", "pods": "2000"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"type": "kwok", "kubernetes.io/hostname": name}},
            "status": {"capacity": capacity, "allocatable": capacity}}


def spec(i: int) -> dict[str, Any]:
    """A five-step run no cache can serve (its eval mode is its own), as the emulator benchmark's;
    no pod reads the files it names."""
    return {
        "apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun", "metadata": {"name": f"run{i:04d}"},
        "spec": {
            "model": {"hf": "/models/tiny"},
            "data": {"sources": [{"fromStep": "eval", "format": "eval_results"}]},
            "steps": {"eval": {"items": "/data/items.jsonl", "backend": {"asgi": "tests.app:app"}, "mode": f"bench-{i}"},
                      "pack": {}, "train": {"maxSteps": 2}, "evaluate": {}, "gguf": {"quantizations": ["Q8_0"]}},
        },
    }


class JobClock:
    """Local arrival times of Job events: created (ADDED) and succeeded (first Complete)."""

    def __init__(self, api, ns: str) -> None:
        self.created: dict[str, float] = {}
        self.succeeded: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(api, ns), daemon=True)
        self._thread.start()

    def _watch(self, api, ns: str) -> None:
        from kubernetes import client, watch

        batch = client.BatchV1Api(api)
        version = batch.list_namespaced_job(ns).metadata.resource_version
        while not self._stop.is_set():
            stream = watch.Watch()
            for event in stream.stream(batch.list_namespaced_job, ns, resource_version=version, timeout_seconds=30):
                now, job = time.monotonic(), event["object"]
                version = job.metadata.resource_version
                self.created.setdefault(job.metadata.name, now)
                if any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or []):
                    self.succeeded.setdefault(job.metadata.name, now)
                if self._stop.is_set():
                    stream.stop()

    def stop(self) -> None:
        self._stop.set()


def measure(runs: int, timeout: float) -> dict[str, Any]:
    import psutil
    from kubernetes import client

    from tests.cluster import apiserver
    from tests.cluster.kit import CRD, GROUP, PLURAL, VERSION, controller, namespace, wait_for

    work = Path(tempfile.mkdtemp(prefix="ft-bench-scale-"))
    plane = apiserver.start(work / "plane", *apiserver.binaries())
    procs: list[subprocess.Popen] = []
    try:
        from tests.cluster.node import binaries as node_binaries

        scheduler = node_binaries()[0]
        log = work / "kube-scheduler.log"
        procs.append(subprocess.Popen([str(scheduler), "--kubeconfig", str(plane.kubeconfig(work / "s.kubeconfig")),
                                       "--leader-elect=false", "--secure-port=0", "--kube-api-qps=500",
                                       "--kube-api-burst=1000"], stdout=log.open("wb"), stderr=subprocess.STDOUT))
        log = work / "kwok.log"
        procs.append(subprocess.Popen([str(kwok_binary()), "--kubeconfig", str(plane.kubeconfig(work / "k.kubeconfig")),
                                       "--manage-all-nodes=false",
                                       "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                                       "--cidr=10.0.0.1/24", "--node-ip=10.0.0.1", "--server-address=",
                                       "--node-lease-duration-seconds=40"],
                                      stdout=log.open("wb"), stderr=subprocess.STDOUT))
        admin = plane.client()
        core, ext = client.CoreV1Api(admin), client.ApiextensionsV1Api(admin)
        for i in range(FAKE_NODES):
            core.create_node(fake_node(f"kwok-{i}"))
        ext.create_custom_resource_definition(CRD)
        wait_for("the CRD", lambda: any(c.type == "Established" and c.status == "True" for c in
                                        ext.read_custom_resource_definition(CRD["metadata"]["name"]).status.conditions or []))
        wait_for("kwok's nodes to be Ready", lambda: all(any(
            c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            for n in core.list_node().items), timeout=120)
        ns = namespace(admin, restricted=False)
        wait_for("the default ServiceAccount", lambda: core.list_namespaced_service_account(
            ns, field_selector="metadata.name=default").items)
        clock = JobClock(admin, ns)
        (work / "controller").mkdir()
        with controller(plane, admin, ns, work / "controller") as (proc, _log):
            time.sleep(3)  # its watches are up
            ctl = psutil.Process(proc.pid)
            sampler = report.TreeSampler(proc.pid, every=0.5)
            cpu0, t0 = sum(ctl.cpu_times()[:2]), time.monotonic()
            runs_api = client.CustomObjectsApi(admin)
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: runs_api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, spec(i)),
                              range(runs)))
            t_created = time.monotonic()

            def finished() -> int:
                items = runs_api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
                return sum((r.get("status") or {}).get("phase") in ("Succeeded", "Failed") for r in items)

            done = 0
            while time.monotonic() < t0 + timeout:
                done = finished()
                if done == runs:
                    break
                time.sleep(2)
            t1 = time.monotonic()
            cpu1, end_rss = sum(ctl.cpu_times()[:2]), ctl.memory_info().rss
            peak = sampler.stop()
        clock.stop()
        requests = plane.requests_by(f"system:serviceaccount:{ns}:ft-finetune-operator")
    finally:
        for p in procs:
            p.terminate()
        plane.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return {"runs": runs, "finished": done, "wall": t1 - t0, "createWall": t_created - t0,
            "handoff": list(handoffs(clock.succeeded, clock.created, STEPS).values()), "jobs": len(clock.created),
            "ctlCpu": cpu1 - cpu0, "ctlPeakRss": peak, "ctlEndRss": end_rss, "requests": requests}


def build_section(m: dict[str, Any]) -> report.Section:
    h = m["handoff"]
    p50, p99 = percentile(h, 50), percentile(h, 99)
    total = sum(v for k, v in m["requests"].items() if not k.startswith("watch"))
    rows = [
        ["runs created at once", f"{m['runs']:,} ({len(STEPS)} steps each, created in {report.fmt_s(m['createWall'])})"],
        ["runs finished", f"{m['finished']:,}"],
        ["Jobs created", f"{m['jobs']:,}"],
        ["Job success -> next Job created, p50 / p99 / max",
         f"{report.fmt_s(p50)} / {report.fmt_s(p99)} / {report.fmt_s(max(h, default=float('nan')))} ({len(h):,} hand-offs)"],
        ["total wall time (first create to last run finished)", report.fmt_s(m["wall"])],
        ["controller peak RSS (end)", f"{report.fmt_mib(m['ctlPeakRss'])} ({report.fmt_mib(m['ctlEndRss'])})"],
        ["controller CPU", f"{report.fmt_s(m['ctlCpu'])} ({m['ctlCpu'] / m['wall']:.0%} of one core)"],
        ["controller API requests (audit log; watches aside), per run",
         f"{total:,}, {total / m['runs']:.1f} per run: " + ", ".join(
             f"{k} {v:,}" for k, v in sorted(m["requests"].items(), key=lambda kv: -kv[1]))],
    ]
    return report.Section(
        title="Controller scale on a real API server (kube-apiserver, Job controller, scheduler, kwok nodes)",
        columns=["what", "measured"], rows=rows,
        meaning=(f"{m['runs']:,} runs of {len(STEPS)} steps through the real Job controller and scheduler: the next "
                 f"Job followed a Job's success in p50 {report.fmt_s(p50)}, p99 {report.fmt_s(p99)}. Here the Jobs "
                 "finish as fast as kwok and the Job controller move them, spread over time rather than in one burst "
                 "as on the emulator; the whole control plane shares the machine with the controller."),
        goals=[report.Goal("hand-off p99 (Job success -> next Job)", f"<= {GOAL_P99:g} s", report.fmt_s(p99), p99 <= GOAL_P99),
               report.Goal("controller peak RSS", f"<= {GOAL_RSS / 1e6:.0f} MB", f"{m['ctlPeakRss'] / 1e6:.0f} MB",
                           m["ctlPeakRss"] <= GOAL_RSS)],
        notes=["Times are this process's arrival times of watch events, so they include the API server's watch "
               "delivery to two clients (the controller and this one)."],
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.controller_scale_cluster", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--runs", type=int, help="runs (default 1,000; 100 with --quick)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for every run to finish")
    args = p.parse_args(argv)
    where = report.machine()
    m = measure(args.runs or (100 if args.quick else 1000), args.timeout)
    report.publish(build_section(m), report.command_line("bench.controller_scale_cluster", argv),
                   report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
