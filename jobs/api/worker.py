"""Runs fine-tuning jobs on the local runner, one at a time, and turns what the run reports
(step events, training progress, checkpoints, the final status) into the job's record.
`JobRecorder` is that record keeping, shared with the cluster backend (jobs/api/cluster.py)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from jobs.api.records import Records, add_event
from jobs.api.results import step_metrics_csv
from jobs.common import artifacts
from jobs.common.spec import FineTuneRun
from jobs.common.status import RunStatus
from jobs.pipeline.local import LocalRunner

log = logging.getLogger("jobs.api")

# The run's phase -> the job's status (Pending stays queued: nothing has started yet).
STATUS = {"Pending": "queued", "Running": "running", "Succeeded": "succeeded", "Failed": "failed",
          "Cancelled": "cancelled"}
FINISHED = ("succeeded", "failed", "cancelled")
STOPPED_BY_USER = ("cancelled", "paused")


class JobRecorder:
    """Writes what a run reports into its job's record: events, checkpoints, the end."""

    def __init__(self, records: Records, work_root: Path):
        self.records = records
        self.work_root = work_root

    def _ended(self, ns: str, job_id: str, status: RunStatus, why: str | None) -> None:
        """The run is over: `why` (cancelled, paused) when a user stopped it, else its phase says."""
        if why:
            self._finish(ns, job_id, why)
        elif status.phase == "Succeeded":
            self._finish(ns, job_id, "succeeded", trained_tokens=self._trained_tokens(ns, job_id),
                         result_file=self._result_file(ns, job_id, self.work_root / ns / job_id))
        else:
            err = status.error
            message = err.message if err else f"the run ended {status.phase}"
            self._finish(ns, job_id, STATUS.get(status.phase, "failed"),
                         error={"code": (err.code if err else None) or "run_failed", "message": message, "param": None})

    def _result_file(self, ns: str, job_id: str, work: Path) -> str | None:
        """The step_metrics.csv result file made from the train step's metrics, as a tenant file."""
        manifest = artifacts.read_manifest(self.records.store, ns, job_id, "train")
        if manifest is None or not any(f["path"] == "metrics.jsonl" for f in manifest["files"]):
            return None
        local = artifacts.fetch(self.records.store, manifest, work / "results", only="metrics.jsonl")
        data = step_metrics_csv((local / "metrics.jsonl").read_bytes())
        return self.records.add_file(ns, "step_metrics.csv", "fine-tune-results", data)["id"]

    def _trained_tokens(self, ns: str, job_id: str) -> int | None:
        manifest = artifacts.read_manifest(self.records.store, ns, job_id, "train") or {}
        return (manifest.get("metrics") or {}).get("trainTokens")

    def _on_update(self, ns: str, job_id: str, step: str, msg: dict[str, Any]) -> None:
        def change(job: dict[str, Any]) -> None:
            internal = job["internal"]
            if msg["type"] == "progress" and step == "train" and msg.get("loss") is not None:
                internal["last_loss"] = msg["loss"]
                internal["last_step"] = msg.get("current")
                data = {"step": msg.get("current"), "train_loss": msg["loss"], "total_steps": msg.get("total")}
                add_event(job, f"Step {msg.get('current')}/{msg.get('total')}: training loss={msg['loss']:.4f}",
                          type="metrics", data=data)
                if msg.get("etaSeconds") is not None:
                    job["estimated_finish"] = int(time.time() + msg["etaSeconds"])
            elif msg["type"] == "event" and msg.get("message") == "checkpoint":
                _add_checkpoint(job, int(msg["globalStep"]))
            elif msg["type"] == "event" and msg.get("message") in ("started", "cached", "succeeded", "failed"):
                failed = msg["message"] == "failed"
                text = f"Step {step} {msg['message']}" + (f": {msg.get('error')}" if failed else "")
                add_event(job, text, level="error" if failed else "info")

        self.records.update_job(ns, job_id, change)

    def _finish(self, ns: str, job_id: str, status: str, *, error: dict | None = None,
                trained_tokens: int | None = None, result_file: str | None = None) -> None:
        def change(job: dict[str, Any]) -> None:
            job["status"] = status
            job["estimated_finish"] = None
            if status == "paused":
                add_event(job, "Fine-tuning job paused")
                return
            job["finished_at"] = int(time.time())
            if status == "succeeded":
                job["fine_tuned_model"] = job["internal"]["fine_tuned_model"]
                job["trained_tokens"] = trained_tokens
                job["result_files"] = [result_file] if result_file else []
                total = job["internal"].get("last_step")
                if total is not None:
                    _add_checkpoint(job, total)
                add_event(job, f"New fine-tuned model created: {job['fine_tuned_model']}")
                add_event(job, "The job has successfully completed")
            elif status == "cancelled":
                add_event(job, "Fine-tuning job cancelled")
            else:
                job["error"] = error
                add_event(job, f"The job failed: {error['message'] if error else 'unknown error'}", level="error")

        self.records.update_job(ns, job_id, change)


class LocalWorker(JobRecorder):
    def __init__(self, records: Records, work_root: Path):
        super().__init__(records, work_root)
        self._queue: queue.Queue[tuple[str, str, FineTuneRun]] = queue.Queue()
        self._runners: dict[str, LocalRunner] = {}
        self._stop_requested: dict[str, str] = {}  # job id -> "cancelled" or "paused"
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, name="ft-api-worker", daemon=True).start()

    def submit(self, ns: str, job_id: str, run: FineTuneRun) -> None:
        self._queue.put((ns, job_id, run))

    def stop(self, ns: str, job_id: str, why: str) -> None:
        """Stop a queued or running job; `why` (cancelled or paused) is the status it ends in.
        A queued job ends at once; its queue entry is skipped when reached."""
        with self._lock:
            runner = self._runners.get(job_id)
            if runner is None:
                self._finish(ns, job_id, why)
                return
            self._stop_requested[job_id] = why
        # The run's status reads Cancelled too (Suspended, for a pause), as `ftctl status` shows it.
        threading.Thread(target=runner.cancel, args=(f"{why} through the fine-tuning API",), daemon=True).start()

    def _loop(self) -> None:
        while True:
            ns, job_id, run = self._queue.get()
            try:
                self._run(ns, job_id, run)
            except Exception as err:  # the worker must outlive any one job
                log.exception("job %s/%s crashed", ns, job_id)
                self._finish(ns, job_id, "failed", error={"code": "server_error", "message": str(err), "param": None})

    def _run(self, ns: str, job_id: str, run: FineTuneRun) -> None:
        work = self.work_root / ns / job_id
        runner = LocalRunner(run, self.records.store, work, work, on_update=lambda step, msg: self._on_update(
            ns, job_id, step, msg))
        with self._lock:
            if (self.records.job(ns, job_id) or {}).get("status") != "queued":
                return  # cancelled or paused while it waited
            self._runners[job_id] = runner
        self.records.update_job(ns, job_id, set_running)
        try:
            status = runner.execute()
        finally:
            with self._lock:
                self._runners.pop(job_id, None)
                why = self._stop_requested.pop(job_id, None)
        self._ended(ns, job_id, status, why)


def set_running(job: dict[str, Any]) -> None:
    job["status"] = "running"
    add_event(job, "Fine-tuning job started")


def _add_checkpoint(job: dict[str, Any], step: int) -> None:
    if any(c["step_number"] == step for c in job["checkpoints"]):
        return
    short = job["id"].removeprefix("ftjob-")
    job["checkpoints"].append({
        "id": f"ftckpt-{short}-{step:06d}", "object": "fine_tuning.job.checkpoint", "created_at": int(time.time()),
        "fine_tuned_model_checkpoint": f"{job['internal']['fine_tuned_model']}:ckpt-step-{step}",
        "fine_tuning_job_id": job["id"], "step_number": step,
        "metrics": {"step": float(step), "train_loss": job["internal"].get("last_loss")},
    })
    add_event(job, f"Checkpoint created at step {step}")
