"""`ftctl run` and `ftctl status` end to end on a pack-only spec (real child processes)."""

import json
import subprocess
import sys

import yaml

from jobs.cli.sample_data import sample_rows


def _project(tmp_path, data_lines=None):
    data = tmp_path / "qa.jsonl"
    rows = data_lines if data_lines is not None else [json.dumps(r) for r in sample_rows(120)]
    data.write_text("\n".join(rows) + "\n")
    spec = {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": "packonly", "namespace": "team-a"},
        "spec": {
            "model": {"gguf": "model.gguf"},
            "data": {"sources": [{"path": "qa.jsonl", "format": "openai_chat"}]},
            "steps": {"pack": {}},
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def ftctl(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_run_then_cached_rerun_then_status(tmp_path):
    spec = _project(tmp_path)
    store = (tmp_path / "store").as_uri()
    first = ftctl("run", str(spec), "--store", store, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "steps executed: pack" in first.stdout
    status = json.loads((tmp_path / "store/runs/team-a/packonly/status.json").read_text())
    assert status["phase"] == "Succeeded" and status["steps"][0]["phase"] == "Succeeded"
    assert (tmp_path / "store/runs/team-a/packonly/pack/_manifest.json").exists()
    assert json.loads((tmp_path / "store/runs/team-a/packonly/spec.json").read_text())["metadata"]["name"] == "packonly"

    second = ftctl("run", str(spec), "--store", store, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "steps executed: none" in second.stdout and "[pack] cached" in second.stdout
    status = json.loads((tmp_path / "store/runs/team-a/packonly/status.json").read_text())
    assert status["steps"][0]["phase"] == "Cached" and status["steps"][0]["cached"] is True

    shown = ftctl("status", "packonly", "-n", "team-a", "--store", store, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Succeeded" in shown.stdout and "pack" in shown.stdout and "file://" in shown.stdout


def test_changed_data_invalidates_the_cache(tmp_path):
    spec = _project(tmp_path)
    store = (tmp_path / "store").as_uri()
    assert ftctl("run", str(spec), "--store", store, cwd=tmp_path).returncode == 0
    with open(tmp_path / "qa.jsonl", "a") as f:
        f.write(json.dumps(sample_rows(130)[-1] | {"id": "extra"}) + "\n")
    again = ftctl("run", str(spec), "--store", store, cwd=tmp_path)
    assert "steps executed: pack" in again.stdout


def test_failing_step_fails_the_run_and_commits_nothing(tmp_path):
    spec = _project(tmp_path, data_lines=['{"messages": [}'])
    store = (tmp_path / "store").as_uri()
    res = ftctl("run", str(spec), "--store", store, cwd=tmp_path)
    assert res.returncode == 1
    assert "qa.jsonl:1: not valid JSON" in res.stdout
    assert not (tmp_path / "store/runs/team-a/packonly/pack/_manifest.json").exists()
    status = json.loads((tmp_path / "store/runs/team-a/packonly/status.json").read_text())
    assert status["phase"] == "Failed" and status["error"]["step"] == "pack"
    assert status["steps"][0]["attempts"] == 1  # invalid data is permanent: no retry
    assert "Traceback" not in res.stdout + res.stderr


def test_status_shows_before_after_from_the_evaluate_manifest(tmp_path):
    from rich.console import Console

    from jobs.cli.report import print_summary
    from jobs.common import artifacts
    from jobs.common.store import open_store

    store = open_store((tmp_path / "s").as_uri())
    store.put_bytes("runs/ns/r/status.json", json.dumps({"phase": "Succeeded", "steps": []}).encode())
    w = artifacts.StepWriter(store, "ns", "r", "evaluate")
    w.begin()
    w.commit(input_key="k", code_version="c", metrics={"basePassRate": 0.1, "tunedPassRate": 0.8, "baseLoss": 0.7, "tunedLoss": 0.1})
    console = Console(record=True, width=120)
    print_summary(console, store, "ns", "r")
    text = console.export_text()
    assert "before / after" in text
    assert "PassRate" in text and "+0.7000" in text and "-0.6000" in text


def test_status_says_where_the_training_report_is(tmp_path):
    from rich.console import Console

    from jobs.cli.report import print_summary
    from jobs.common.store import open_store

    store = open_store((tmp_path / "s").as_uri())
    train_report = f"{store.uri}/runs/ns/r/train/training_report.md"
    status = {"phase": "Failed", "steps": [], "artifacts": {"trainingReport": train_report}}
    store.put_bytes("runs/ns/r/status.json", json.dumps(status).encode())

    def shown() -> str:
        console = Console(record=True, width=300)
        print_summary(console, store, "ns", "r")
        return console.export_text()

    assert f"training report: {train_report}" in shown()
    # a failed gate commits nothing, but the evaluate step's complete report is uploaded
    store.put_bytes("runs/ns/r/evaluate/training_report.md", b"# Training report")
    assert f"training report: {store.uri}/runs/ns/r/evaluate/training_report.md" in shown()
