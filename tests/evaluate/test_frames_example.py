"""examples/frames-sft.yaml: generative frame classification of a chunk_text,frame_name CSV."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from jobs.common.specio import load_run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "frames-sft.yaml"
FRAMES = {"Conflict", "Moral Value", "Economic", "Powerlessness", "None", "Human Impact"}


def test_the_example_is_sft_on_six_frames_gated_on_f1_macro():
    spec = load_run(EXAMPLE).spec
    assert spec.steps.train.method == "sft" and spec.steps.pack.format == "openai_chat"
    assert spec.steps.evaluate.gate == "tunedF1Macro >= baseF1Macro + 0.1"
    source = spec.data.sources[0]
    with open(EXAMPLE.parent / source.path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"chunk_text", "frame_name"} and source.columns == {"text": "chunk_text", "label": "frame_name"}
    assert Counter(r["frame_name"] for r in rows) == {frame: 10 for frame in FRAMES}
    assert all(frame in spec.steps.pack.system_prompt for frame in FRAMES)  # the model is told the label set


def ftctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=3600)


def test_pack_keeps_every_frame_in_every_split(tmp_path):
    manifest = yaml.safe_load(EXAMPLE.read_text())
    del manifest["spec"]["steps"]["train"], manifest["spec"]["steps"]["evaluate"]
    manifest["spec"]["data"]["sources"][0]["path"] = str(EXAMPLE.parent / "data" / "frames.csv")
    spec, store = tmp_path / "pack-only.yaml", tmp_path / "store"
    spec.write_text(yaml.safe_dump(manifest))
    res = ftctl("run", str(spec), "--store", str(store), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((store / "runs/default/frames-sft/pack/report.json").read_text())
    assert report["split"]["stratified"] is True and report["counts"]["dropped"] == 0
    assert all(set(report["labels"][split]) == FRAMES for split in ("train", "val", "test"))


@pytest.mark.slow
def test_the_example_runs_on_a_cpu_and_its_gate_holds(tmp_path):
    store = tmp_path / "store"
    res = ftctl("run", str(EXAMPLE), "--store", str(store), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = store / "runs/default/frames-sft/evaluate"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == sorted(FRAMES)
    assert metrics["tuned"]["f1Macro"] >= metrics["base"]["f1Macro"] + 0.1 and metrics["gate"]["passed"]
    assert (out / "confusion.png").is_file() and "## Sample generations" in (out / "training_report.md").read_text()
    status = ftctl("status", "frames-sft", "--store", str(store), cwd=tmp_path)
    assert f"training report: {store.as_uri()}/runs/default/frames-sft/evaluate/training_report.md" in status.stdout
