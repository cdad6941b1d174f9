"""The step harness as a pod runs it: exit codes and the termination message."""

import json
import os
import subprocess
import sys

from controller.observe import parse_termination
from jobs.common.errors import EXIT_INVALID


def test_failed_step_writes_its_error_to_the_termination_log(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"messages": [}\n')
    spec = {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": "t1"},
        "spec": {
            "model": {"gguf": "m.gguf"},
            "data": {"sources": [{"path": "bad.jsonl", "format": "openai_chat"}]},
            "steps": {"pack": {}},
        },
    }
    term = tmp_path / "termination-log"
    env = dict(
        os.environ,
        FT_SPEC=json.dumps(spec),
        FT_STORE_URI=(tmp_path / "store").as_uri(),
        FT_BASE_DIR=str(tmp_path),
        FT_TERMINATION_LOG=str(term),
    )
    res = subprocess.run([sys.executable, "-m", "jobs.pack"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == EXIT_INVALID
    err = parse_termination(term.read_text(), res.returncode)
    assert err.code == "InvalidData" and "bad.jsonl:1" in err.message
    assert not (tmp_path / "store/runs/default/t1/pack/_manifest.json").exists()
