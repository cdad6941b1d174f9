"""Ctrl-C on `ftctl run` while a step runs.

The running child is stopped (SIGINT to its process group, SIGKILL after a grace period), its
output is not committed, the run's status says Cancelled, and the next `ftctl run` redoes the
interrupted step while the finished one is a cache hit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from faultkit import REPO, interruptible, pack_spec, wait_for, write_spec
from jobs.common import artifacts
from jobs.common.store import open_store

NS, RUN = "faults", "interrupted"
ITEMS = [
    {"id": f"q{i}", "messages": [{"role": "user", "content": f"Say the number {i}."}], "expected": f"echo: Say the number {i}."}
    for i in range(6)
]


@pytest.fixture
def project(tmp_path, big_dataset) -> Path:
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    spec = pack_spec(
        RUN,
        [{"fromStep": "eval", "format": "eval_results"}, {"path": str(big_dataset), "format": "openai_chat"}],
        steps={
            # An in-process OpenAI-compatible app that echoes the question (tests/eval/openai_fake.py).
            "eval": {"items": "items.jsonl", "backend": {"asgi": "tests.eval.openai_fake:app"}},
            "pack": {"nearDupThreshold": None, "curate": "expected"},
        },
    )
    return write_spec(tmp_path / "run.yaml", spec)


def _ftctl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FT_")}
    return env | {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _ftctl_run(project: Path, store_uri: str, work: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli.main", "run", str(project), "--store", store_uri, "--work-dir", str(work)],
        cwd=project.parent, env=_ftctl_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible, **kw,
    )


def test_ctrl_c_cancels_then_rerun_redoes_only_the_interrupted_step(project, tmp_path):
    store_uri = (tmp_path / "store").as_uri()
    store = open_store(store_uri)
    work = tmp_path / "work"
    ftctl = _ftctl_run(project, store_uri, work)
    seen: list[str] = []

    def pack_started() -> bool:
        line = ftctl.stdout.readline()
        seen.append(line)
        return "[pack] started" in line or (not line and ftctl.poll() is not None)

    wait_for(pack_started, timeout=600, interval=0)
    assert "[eval] succeeded\n" in seen, "".join(seen)
    child = wait_for(lambda: [p for p in psutil.Process(ftctl.pid).children() if "jobs.pack" in p.cmdline()], timeout=60)[0]
    wait_for(lambda: (work / "scratch" / "pack").exists(), timeout=60)  # the child is at work

    ftctl.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal delivers to ftctl
    out, err = ftctl.communicate(timeout=120)
    assert ftctl.returncode == 130, out + err
    assert "interrupted" in out + err
    assert "Traceback" not in out + err
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, "the step process outlived ftctl"
    assert "interrupted; nothing was committed" in (work / "logs" / "pack.log").read_text()

    status = json.loads(store.get_bytes(f"runs/{NS}/{RUN}/status.json"))
    assert status["phase"] == "Cancelled", status
    phases = {s["name"]: s["phase"] for s in status["steps"]}
    assert phases == {"eval": "Succeeded", "pack": "Cancelled"}
    assert artifacts.read_manifest(store, NS, RUN, "pack") is None
    assert artifacts.read_manifest(store, NS, RUN, "eval") is not None

    again = _ftctl_run(project, store_uri, tmp_path / "work-2")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, out + err
    assert "[eval] cached" in out and "steps executed: pack" in out
    status = json.loads(store.get_bytes(f"runs/{NS}/{RUN}/status.json"))
    assert status["phase"] == "Succeeded"
    assert {s["name"]: s["phase"] for s in status["steps"]} == {"eval": "Cached", "pack": "Succeeded"}
    manifest = artifacts.read_manifest(store, NS, RUN, "pack")
    artifacts.fetch(store, manifest, tmp_path / "verify")  # every file verifies
