"""Training stopped the ways the harnesses stop it, then resumed from its last checkpoint.

- Ctrl-C on `ftctl run`: the runner sends SIGINT to the train process (KeyboardInterrupt inside
  the Trainer's loop), the run is Cancelled with nothing committed, and the next `ftctl run`
  takes pack from the cache and resumes train from the newest committed checkpoint.
- SIGTERM, what the kubelet sends a step pod that is deleted or preempted: the step saves a
  checkpoint, exits EXIT_PREEMPTED (retryable), and the rerun (the Job's next pod) resumes from it.

The checkpoint mechanism is the train step's (jobs/train/checkpoints.py); tests/train covers
SIGKILL and corrupt checkpoints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from faultkit import REPO, interruptible, pack_spec, step_env, wait_for, write_rows, write_spec
from jobs.common import artifacts
from jobs.common.errors import EXIT_PREEMPTED
from jobs.common.store import open_store

from tests.train.trainkit import smollm2_tokenizer_dir, tiny_llama  # noqa: F401  (fixtures)

NS = "faults"
MAX_STEPS = 40
TRAIN = {
    "maxSteps": MAX_STEPS, "checkpointEvery": 4, "batchSize": 2, "learningRate": 0.005, "maxLength": 64,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
}


def _project(tmp_path: Path, name: str, model: Path) -> Path:
    write_rows(tmp_path / "rows.jsonl", 24)
    spec = pack_spec(
        name, [{"path": "rows.jsonl", "format": "openai_chat"}],
        steps={"pack": {"nearDupThreshold": None}, "train": TRAIN}, model={"hf": str(model)},
    )
    return write_spec(tmp_path / "run.yaml", spec)


def _checkpoints(store, run: str) -> list[int]:
    prefix = f"runs/{NS}/{run}/train/checkpoints"
    return sorted({int(k.split("/")[-2].split("-")[1]) for k in store.list(prefix) if k.endswith("/_manifest.json")})


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FT_")}
    return env | {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "FT_PROGRESS_INTERVAL": "0"}


def _ftctl_run(spec: Path, store_uri: str, work: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli.main", "run", str(spec), "--store", store_uri, "--work-dir", str(work)],
        cwd=spec.parent, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,
    )


def _assert_resumed(store, run: str, saved: list[int]) -> None:
    manifest = artifacts.read_manifest(store, NS, run, "train")
    assert manifest is not None and manifest["cached"] is False
    assert manifest["metrics"]["resumedFromStep"] == max(saved)
    assert manifest["metrics"]["steps"] == MAX_STEPS


@pytest.mark.slow
def test_ctrl_c_during_training_then_rerun_resumes(tiny_llama, tmp_path):
    run = "ctrlc"
    spec = _project(tmp_path, run, tiny_llama)
    store_uri = (tmp_path / "store").as_uri()
    store = open_store(store_uri)
    first = _ftctl_run(spec, store_uri, tmp_path / "w1")
    wait_for(lambda: _checkpoints(store, run) or first.poll() is not None, timeout=900, interval=0.05)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130, out + err
    saved = _checkpoints(store, run)
    assert saved and max(saved) < MAX_STEPS, f"stopped too late: checkpoints {saved}"
    assert artifacts.read_manifest(store, NS, run, "train") is None
    status = json.loads(store.get_bytes(f"runs/{NS}/{run}/status.json"))
    assert status["phase"] == "Cancelled"
    assert "interrupted; nothing was committed" in (tmp_path / "w1" / "logs" / "train.log").read_text()

    second = _ftctl_run(spec, store_uri, tmp_path / "w2")
    out, err = second.communicate(timeout=900)
    assert second.returncode == 0, out + err
    assert "[pack] cached" in out and "steps executed: train" in out
    _assert_resumed(store, run, saved)


@pytest.mark.slow
def test_sigterm_during_training_then_next_pod_resumes(tiny_llama, tmp_path):
    run = "sigterm"
    spec = _project(tmp_path, run, tiny_llama)
    store_uri = (tmp_path / "store").as_uri()
    store = open_store(store_uri)
    packed = subprocess.run([sys.executable, "-m", "jobs.pack"], cwd=REPO, env=step_env(spec, store_uri, tmp_path / "s0"),
                            capture_output=True, text=True, timeout=300)
    assert packed.returncode == 0, packed.stderr

    env = step_env(spec, store_uri, tmp_path / "s1", FT_PROGRESS_INTERVAL="0")
    pod = subprocess.Popen([sys.executable, "-m", "jobs.train"], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _checkpoints(store, run) or pod.poll() is not None, timeout=900, interval=0.05)
    pod.send_signal(signal.SIGTERM)
    pod.wait(timeout=60)
    assert pod.returncode == EXIT_PREEMPTED
    saved = _checkpoints(store, run)
    assert saved and max(saved) < MAX_STEPS, f"stopped too late: checkpoints {saved}"
    assert artifacts.read_manifest(store, NS, run, "train") is None

    # The Job's next pod: a fresh scratch, the same store.
    again = subprocess.run([sys.executable, "-m", "jobs.train"], cwd=REPO,
                           env=step_env(spec, store_uri, tmp_path / "s2", FT_PROGRESS_INTERVAL="0"),
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = [json.loads(line) for line in again.stdout.splitlines() if '"message": "resuming"' in line]
    assert resumed and resumed[0]["fromStep"] == max(saved), again.stdout[-3000:] + again.stderr[-3000:]
    _assert_resumed(store, run, saved)
