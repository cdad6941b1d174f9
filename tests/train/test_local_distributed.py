"""`ftctl run` trains with several processes on one machine, as a pod of the same spec would:
the train step launches its workers through torchrun's launcher on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from jobs.cli.sample_data import sample_rows


def test_ftctl_run_trains_with_two_processes(tmp_path, tiny_llama):
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sample_rows(40)))
    spec = {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": "twoprocs"},
        "spec": {
            "model": {"hf": str(tiny_llama)},
            "data": {"sources": [{"path": "qa.jsonl", "format": "openai_chat"}]},
            "steps": {
                "pack": {},
                "train": {"maxSteps": 2, "batchSize": 1, "maxLength": 128, "lora": {"r": 4, "alpha": 8},
                          "distributed": {"procsPerNode": 2}},
            },
        },
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(spec))
    store = (tmp_path / "store").as_uri()
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "jobs.cli.main", "run", "run.yaml", "--store", store], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((tmp_path / "store/runs/default/twoprocs/train/_manifest.json").read_text())
    assert manifest["metrics"]["worldSize"] == 2 and manifest["metrics"]["steps"] == 2
