"""The local runner: carry out the planner's actions as child processes.

Each step runs as `python -m jobs.<step>` with the same environment a pod gets.
Its stdout carries JSON progress lines (shown live); its stderr goes to a log
file. The run's status is kept in the store as `runs/<ns>/<run>/status.json`,
which `ftctl status` reads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from jobs.common import artifacts, keys
from jobs.common.artifacts import now_iso
from jobs.common.errors import PERMANENT_EXIT_CODES
from jobs.common.progress import StepProgress, parse_line
from jobs.common.spec import FineTuneRun
from jobs.common.status import RunStatus
from jobs.common.store import Store
from jobs.pipeline.cache import adopt_if_cached, outputs_to_uris
from jobs.pipeline.planner import Observed, Start, plan

STOP_GRACE_SECONDS = 20


class StepProcess:
    """One child process; reads its progress lines in a thread."""

    def __init__(self, step: str, env: dict[str, str], log_path: Path, on_message: Callable[[dict], None]):
        self.step = step
        self.last_error: dict[str, Any] | None = None
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"jobs.{step}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the child ourselves
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, args=(on_message,), daemon=True)
        self._reader.start()

    def _read(self, on_message: Callable[[dict], None]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = parse_line(line)
            if msg is None:
                self._log.write(line.encode())
                continue
            if msg["type"] == "error":
                self.last_error = msg
            on_message(msg)

    def wait(self) -> int:
        code = self.proc.wait()
        self._reader.join(timeout=5)
        self._log.close()
        return code

    def stop(self) -> None:
        """SIGINT the child's group, then SIGKILL after a grace period."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class LocalRunner:
    def __init__(
        self,
        run: FineTuneRun,
        store: Store,
        base_dir: Path,
        work_dir: Path,
        *,
        force: bool = False,
        on_update: Callable[[str, dict[str, Any]], None] = lambda step, msg: None,
        extra_env: dict[str, str] | None = None,
    ):
        self.run = run
        self.spec = run.spec
        self.store = store
        self.base_dir = base_dir
        self.work_dir = work_dir
        self.force = force
        self.on_update = on_update
        self.extra_env = extra_env or {}
        self.ns, self.name = run.metadata.namespace, run.metadata.name
        self.steps = self.spec.steps.enabled()
        self.observed: dict[str, Observed] = {}
        self.current: StepProcess | None = None
        self.status = RunStatus()
        self.executed: list[str] = []
        self.cancelled: str | None = None  # why, once cancel() was called

    # --- store bookkeeping -----------------------------------------------------------------

    def _run_key(self, name: str) -> str:
        return keys.join(keys.run_prefix(self.ns, self.name), name)

    def _save_status(self) -> None:
        body = self.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        self.store.put_bytes(self._run_key("status.json"), json.dumps(body, indent=2).encode())

    # --- actions ---------------------------------------------------------------------------

    def _env(self, step: str, spec_file: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "FT_SPEC_FILE": str(spec_file),
                "FT_STORE_URI": self.store.uri,
                "FT_BASE_DIR": str(self.base_dir),
                "FT_SCRATCH": str(self.work_dir / "scratch" / step),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.force:
            env["FT_FORCE"] = "1"
        env.update(self.extra_env)
        return env

    def _try_cache(self, step: str) -> bool:
        hit = None if self.force else adopt_if_cached(self.store, self.run, step, self.base_dir)
        if hit is None:
            return False
        self.observed[step] = hit
        self.on_update(step, {"type": "event", "message": "cached"})
        return True

    def _start(self, action: Start, spec_file: Path) -> None:
        step = action.step
        if self._try_cache(step):
            return
        started = now_iso()
        self.observed[step] = Observed(phase="Running", attempts=action.attempt, started=started)
        self.on_update(step, {"type": "event", "message": "started", "attempt": action.attempt})

        def on_message(msg: dict) -> None:
            if msg["type"] == "progress":
                obs = self.observed[step]
                self.observed[step] = replace(obs, progress=StepProgress.of(msg))
            self.on_update(step, msg)

        log_path = self.work_dir / "logs" / f"{step}.log"
        self.current = StepProcess(step, self._env(step, spec_file), log_path, on_message)
        if self.cancelled:  # cancel() came while the child started: it may not have seen it
            self.current.stop()
        self.executed.append(step)
        code = self.current.wait()
        proc, self.current = self.current, None
        finished = now_iso()
        obs = self.observed[step]
        if code != 0 and self.cancelled:
            self.observed[step] = replace(obs, phase="NotStarted")  # stopped, not failed: Cancelled
            return
        if code == 0:
            manifest = artifacts.require_manifest(self.store, self.ns, self.name, step)
            phase = "Cached" if manifest.get("cached") else "Succeeded"
            self.observed[step] = replace(
                obs,
                phase=phase,
                finished=finished,
                outputs=outputs_to_uris(self.store, manifest),
                message=manifest.get("note"),  # e.g. train's "stopped early at step …"
            )
            self.on_update(step, {"type": "event", "message": phase.lower()})
            return
        err = proc.last_error or {}
        message = err.get("message") or f"exited with code {code}; last log lines:\n{proc.tail()}"
        self.observed[step] = replace(
            obs,
            phase="Failed",
            finished=finished,
            reason=err.get("code") or f"ExitCode{code}",
            message=f"{message} (log: {proc.log_path})",
            retryable=code not in PERMANENT_EXIT_CODES and code != 130,
        )
        self.on_update(step, {"type": "event", "message": "failed", "code": code, "error": message})

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()

    def cancel(self, why: str) -> None:
        """Stop the run from another thread: the running step is stopped, nothing else starts, and
        the run ends Cancelled with `why` as its message."""
        self.cancelled = why
        self.stop()

    def _end_cancelled(self, why: str) -> RunStatus:
        running = {s: replace(o, phase="NotStarted") for s, o in self.observed.items() if o.phase == "Running"}
        self.observed.update(running)
        p = plan(self.steps, self.observed, now=now_iso(), previous=self.status, suspend=True, suspend_message=why)
        self.status = p.status
        self._save_status()
        return self.status

    def execute(self) -> RunStatus:
        """Run the plan to its end. Ctrl-C stops the child and marks the run Cancelled."""
        spec_file = self.work_dir / "spec.json"
        spec_file.parent.mkdir(parents=True, exist_ok=True)
        spec_file.write_text(json.dumps(self.run.snapshot(), indent=2))
        self.store.put_bytes(self._run_key("spec.json"), spec_file.read_bytes())
        max_attempts = self.spec.job.backoff_limit + 1
        try:
            while True:
                if self.cancelled:
                    return self._end_cancelled(self.cancelled)
                p = plan(self.steps, self.observed, now=now_iso(), previous=self.status, max_attempts=max_attempts)
                self.status = p.status
                self._save_status()
                starts = [a for a in p.actions if isinstance(a, Start)]
                if not starts:
                    return self.status
                for action in starts:
                    self._start(action, spec_file)
        except KeyboardInterrupt:
            self.stop()
            self._end_cancelled("stopped by Ctrl-C; run it again to resume")
            raise


def read_status(store: Store, namespace: str, run: str) -> dict[str, Any] | None:
    raw = store.get_bytes(keys.join(keys.run_prefix(namespace, run), "status.json"))
    return json.loads(raw) if raw else None

