"""The fine-tuning API through the official openai SDK only: files, jobs, events, checkpoints,
errors and tenancy, on the local backend with a tiny random model."""

from __future__ import annotations

import io
import json
import time

import openai
import pytest

from tests.api.conftest import KEY_A


def chat_jsonl(n: int = 12) -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} times three?"},
                          {"role": "assistant", "content": f"{i} times three is {3 * i}, counted {i} by {i}."}]}
            for i in range(n)]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def preference_jsonl(n: int = 10) -> bytes:
    rows = [{"input": {"messages": [{"role": "user", "content": f"What is {i} times three?"}]},
             "preferred_output": [{"role": "assistant", "content": f"It is {3 * i}."}],
             "non_preferred_output": [{"role": "assistant", "content": "I do not know."}]} for i in range(n)]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def upload(client, data: bytes, name: str = "train.jsonl"):
    return client.files.create(file=(name, io.BytesIO(data)), purpose="fine-tune")


def wait_for(client, job_id: str, statuses: tuple[str, ...], timeout: float = 240):
    deadline = time.time() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.time() < deadline, f"job stayed {job.status}"
        time.sleep(0.5)


def test_upload_create_events_checkpoints_and_cancel(client_a):
    f = upload(client_a, chat_jsonl())
    assert (f.object, f.purpose, f.status, f.bytes) == ("file", "fine-tune", "processed", len(chat_jsonl()))
    assert client_a.files.retrieve(f.id).filename == "train.jsonl"
    assert client_a.files.content(f.id).read() == chat_jsonl()
    assert f.id in [x.id for x in client_a.files.list(purpose="fine-tune")]

    job = client_a.fine_tuning.jobs.create(
        training_file=f.id, model="tiny-llama", suffix="qa", seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 2, "n_epochs": "auto"}}},
    )
    assert job.status == "queued" and job.seed == 7 and job.fine_tuned_model is None
    # A second job waits behind the first on the one local worker; cancelled while queued it never runs.
    second = client_a.fine_tuning.jobs.create(training_file=f.id, model="tiny-llama")
    assert client_a.fine_tuning.jobs.cancel(second.id).id == second.id
    assert wait_for(client_a, second.id, ("cancelled", "failed", "succeeded"), 30).status == "cancelled"
    # A DPO job from a preference file: paused while queued, then cancelled.
    prefs = upload(client_a, preference_jsonl(), "prefs.jsonl")
    dpo = client_a.fine_tuning.jobs.create(
        training_file=prefs.id, model="tiny-llama",
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}})
    assert dpo.method.type == "dpo" and dpo.method.dpo.hyperparameters.beta == 0.2
    assert client_a.fine_tuning.jobs.pause(dpo.id).status == "paused"
    with pytest.raises(openai.BadRequestError):
        client_a.fine_tuning.jobs.pause(dpo.id)
    assert client_a.fine_tuning.jobs.cancel(dpo.id).status == "cancelled"

    done = wait_for(client_a, job.id, ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith("ft:tiny-llama:team-a:qa:")
    assert done.trained_tokens and done.trained_tokens > 0
    assert done.finished_at >= done.created_at

    events = list(client_a.fine_tuning.jobs.list_events(job.id, limit=3))  # auto-paginates 3 at a time
    messages = [e.message for e in events]
    assert messages[0] == "The job has successfully completed" and messages[-1].startswith("Created fine-tuning job")
    assert len({e.id for e in events}) == len(events)
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all(e.data["train_loss"] > 0 for e in metrics)
    first_page = client_a.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(first_page.data) == 2 and first_page.has_more

    checkpoints = client_a.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [4, 2]  # newest first; the final step is one too
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-4"
    assert checkpoints[1].metrics.train_loss > 0

    page = client_a.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in page.data] == [dpo.id] and page.has_more
    assert [j.id for j in client_a.fine_tuning.jobs.list(limit=1)] == [dpo.id, second.id, job.id]

    with pytest.raises(openai.BadRequestError) as err:
        client_a.fine_tuning.jobs.cancel(job.id)
    assert err.value.code == "job_finished"


def test_bad_file_is_refused_with_its_line(client_a):
    lines = chat_jsonl().split(b"\n")
    lines[2] = b'{"messages": [{"role": "user", "content": "hi"}]}'
    with pytest.raises(openai.BadRequestError) as err:
        upload(client_a, b"\n".join(lines))
    assert err.value.param == "file" and err.value.code == "invalid_file_format"
    assert "line 3: example_missing_assistant_message" in err.value.message


def test_bad_preference_file_is_refused_with_its_line(client_a):
    lines = preference_jsonl().split(b"\n")
    lines[4] = lines[4].replace(b"non_preferred_output", b"rejected_output")
    with pytest.raises(openai.BadRequestError) as err:
        upload(client_a, b"\n".join(lines))
    assert "line 5: invalid_preference_example: non_preferred_output" in err.value.message


def test_invalid_parameters_are_400_with_param(client_a):
    f = upload(client_a, chat_jsonl())
    cases = [
        ({"model": "gpt-4o-mini"}, "model"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"n_epoch": 3}}, "hyperparameters.n_epoch"),
        ({"training_file": "file-doesnotexist"}, "training_file"),
        ({"method": {"type": "dpo"}}, "training_file"),  # a chat file cannot train DPO
    ]
    for change, param in cases:
        args = {"training_file": f.id, "model": "tiny-llama", **change}
        with pytest.raises(openai.BadRequestError) as err:
            client_a.fine_tuning.jobs.create(**args)
        assert err.value.param == param, (change, err.value.message)
    with pytest.raises(openai.BadRequestError) as err:
        client_a.files.create(file=("x.txt", io.BytesIO(chat_jsonl())), purpose="assistants")
    assert err.value.param == "purpose"


def test_upload_over_the_limit_is_refused(client_a):
    with pytest.raises(openai.APIStatusError) as err:
        upload(client_a, chat_jsonl(2000))  # about 150 KB; the test server takes 64 KiB
    assert err.value.status_code == 413 and err.value.code == "file_too_large"


def test_wrong_key_is_refused(api_base):
    bad = openai.OpenAI(base_url=api_base, api_key="sk-not-a-key-of-this-server", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.files.list()
    assert err.value.code == "invalid_api_key" and "sk-not-a-key" not in err.value.message
    with pytest.raises(openai.AuthenticationError):
        bad.fine_tuning.jobs.list()


def test_two_keys_are_isolated(client_a, client_b):
    f = upload(client_a, chat_jsonl())
    assert f.id not in [x.id for x in client_b.files.list()]
    with pytest.raises(openai.NotFoundError):
        client_b.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        client_b.files.content(f.id)
    with pytest.raises(openai.NotFoundError):
        client_b.files.delete(f.id)
    with pytest.raises(openai.BadRequestError) as err:
        client_b.fine_tuning.jobs.create(training_file=f.id, model="tiny-llama")
    assert err.value.param == "training_file"
    assert client_a.files.delete(f.id).deleted
    with pytest.raises(openai.NotFoundError):
        client_a.files.retrieve(f.id)
    assert KEY_A  # the keys themselves never reach a response
