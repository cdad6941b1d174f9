"""validation_file and result_files through the openai client, and a running job cancelled through
it: the job reads cancelled and so does its run's status.json, as `ftctl status` shows it."""

from __future__ import annotations

import csv
import io
import json
import time

import openai
import pytest

from tests.api.conftest import KEY_A, KEY_B, serving, tiny_template
from tests.api.test_openai_api import chat_jsonl, preference_jsonl, upload, wait_for


def run_file(root, job_id: str, name: str) -> dict:
    return json.loads((root / "store" / "runs" / "team-a" / job_id / name).read_text())


def test_validation_file_joins_the_run_and_the_result_file_holds_the_step_metrics(tmp_path, tiny_llama):
    with serving(tiny_template(tiny_llama), tmp_path) as base:
        client = openai.OpenAI(base_url=base, api_key=KEY_A, max_retries=0)
        other = openai.OpenAI(base_url=base, api_key=KEY_B, max_retries=0)
        train, val = upload(client, chat_jsonl(12)), upload(client, chat_jsonl(10).replace(b"three", b"seven"), "val.jsonl")

        for bad, code in ((upload(other, chat_jsonl(10)).id, "invalid_file"),  # another key's file
                          (upload(client, preference_jsonl(), "p.jsonl").id, "invalid_file_format")):
            with pytest.raises(openai.BadRequestError) as err:
                client.fine_tuning.jobs.create(training_file=train.id, validation_file=bad, model="tiny-llama")
            assert (err.value.param, err.value.code) == ("validation_file", code)

        job = client.fine_tuning.jobs.create(training_file=train.id, validation_file=val.id, model="tiny-llama")
        assert job.validation_file == val.id and job.result_files == []
        done = wait_for(client, job.id, ("succeeded", "failed", "cancelled"))
        assert done.status == "succeeded", done.error
        sources = run_file(tmp_path, job.id, "spec.json")["spec"]["data"]["sources"]
        assert [(s["path"].rsplit("/", 2)[-2], s.get("split")) for s in sources] == [(train.id, None), (val.id, "val")]
        report = run_file(tmp_path, job.id, "pack/report.json")
        counts = report["counts"]
        assert (counts["val"], counts["train"] + counts["test"]) == (10, 12)  # the val file is val, all of it
        [result_id] = done.result_files
        result = client.files.retrieve(result_id)
        assert (result.filename, result.purpose) == ("step_metrics.csv", "fine-tune-results")
        rows = list(csv.DictReader(io.StringIO(client.files.content(result_id).read().decode())))
        assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
        assert all(float(r["train_loss"]) > 0 for r in rows)
        assert set(rows[0]) == {"step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"}
        assert result_id not in [f.id for f in client.files.list(purpose="fine-tune")]
        with pytest.raises(openai.NotFoundError):
            other.files.content(result_id)


def test_a_running_job_cancelled_reads_cancelled_in_its_run_status(tmp_path, tiny_llama):
    template = tiny_template(tiny_llama)
    # long enough to be cancelled while it trains; at most 1000 steps keeps a progress line per step
    template["spec"]["steps"]["train"].update(maxSteps=1000, checkpointEvery=1000)
    with serving(template, tmp_path) as base:
        client = openai.OpenAI(base_url=base, api_key=KEY_A, max_retries=0)
        job = client.fine_tuning.jobs.create(training_file=upload(client, chat_jsonl()).id, model="tiny-llama")
        while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data):
            assert client.fine_tuning.jobs.retrieve(job.id).status in ("queued", "running")
            time.sleep(0.3)
        client.fine_tuning.jobs.cancel(job.id)
        assert wait_for(client, job.id, ("succeeded", "failed", "cancelled"), 60).status == "cancelled"

        status = run_file(tmp_path, job.id, "status.json")
        assert status["phase"] == "Cancelled", status
        assert [(s["name"], s["phase"]) for s in status["steps"]] == [("pack", "Succeeded"), ("train", "Cancelled")]
        assert "error" not in status
        assert any(c["type"] == "Running" and c["message"] == "cancelled through the fine-tuning API"
                   for c in status["conditions"])
